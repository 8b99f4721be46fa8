"""The one-pass scorer equals the per-sentence reference, whatever the batching, chunking and tokenizer.

    pytest tests/test_score.py -q
"""

from __future__ import annotations

import random
import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForCausalLM,
    CohereConfig,
    Gemma2Config,
    GPT2Config,
    GraniteConfig,
    LlamaConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

from rdpt import RdptError
from rdpt.engines.hf import HfEngine
from rdpt.models import encode_prompt_response, load_model, load_tokenizer, render_prompt
from rdpt.provenance.score import ScoreItem, plan_batches, reference_score_items, score_items
from rdpt.provenance.tokens import assign_tokens


def score_hf(model, tok, items, *, chunk_size=1024, max_tokens_per_batch=16384, **kwargs):
    """score_items on a loaded HF model: the hf engine with the scorer's chunk and batch budget."""
    engine = HfEngine(model, chunk_size=chunk_size, max_tokens_per_batch=max_tokens_per_batch, pad_id=tok.pad_token_id)
    return score_items(engine, tok, items, **kwargs)


WORDS = "we add the value of x then carry one so total is check again sum digits answer step".split()

TEMPLATE_A = (
    "{{ bos_token }}{% for m in messages %}<|user|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
TEMPLATE_B = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) if rng.random() < 0.8 else str(rng.randint(0, 999)) for _ in range(rng.randint(2, 9))]
    return " ".join(words).capitalize() + rng.choice([".", ".", "!", "?", ":"])


def _response(rng: random.Random, n_sentences: int) -> str:
    # Sentences glued with " ", "\n" or nothing, so BPE tokens cross sentence boundaries.
    return "".join(_sentence(rng) + rng.choice([" ", " ", "\n", "", "  "]) for _ in range(n_sentences)).rstrip(" ")


def _split(text: str) -> list[tuple[int, int]]:
    """Contiguous spans: a sentence ends after [.!?:] and the whitespace that follows it."""
    ends = [m.end() for m in re.finditer(r"[.!?:]\s*", text)]
    starts = [0] + [e for e in ends if e < len(text)]
    return [(a, b) for a, b in zip(starts, starts[1:] + [len(text)])]


def _train_tokenizer(corpus: list[str], vocab: int, use_regex: bool, bos: bool, specials: list[str]):
    tok = Tokenizer(models.BPE())
    # use_regex=False lets merges run across spaces and punctuation: tokens like "x. T" appear.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=use_regex)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    if bos:  # the tokenizer adds BOS itself, and the template writes it too: encode_prompt keeps one
        tok.post_processor = processors.TemplateProcessing(
            single="<|bos|> $A", special_tokens=[("<|bos|>", tok.token_to_id("<|bos|>"))]
        )
    return tok


def _save_pair(folder, tok, template, config_cls, **config):
    special = {"bos_token": "<|bos|>", "eos_token": "<|eos|>", "pad_token": "<|pad|>"}
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **special)
    fast.chat_template = template
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    # A large init spreads the logits, so an off-by-one position would change every score.
    cfg = config_cls(
        vocab_size=len(fast),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        initializer_range=0.3,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        **config,
    )
    AutoModelForCausalLM.from_config(cfg).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Tiny models gain nothing from a second thread, and OpenMP spin-waits make each forward ~100x
    # slower when another process holds a core.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """Two (model, tokenizer) pairs with different BPE vocabularies, loaded through rdpt.models."""
    rng = random.Random(0)
    corpus = [_response(rng, 6) for _ in range(400)]
    specials = ["<|bos|>", "<|eos|>", "<|pad|>", "<|user|>", "<|assistant|>", "<|end|>", "<|im_start|>", "<|im_end|>"]
    root = tmp_path_factory.mktemp("score_models")
    tok_a = _train_tokenizer(corpus, 420, use_regex=False, bos=True, specials=specials)
    tok_b = _train_tokenizer(corpus, 330, use_regex=True, bos=False, specials=specials)
    folder_a = _save_pair(root / "llama", tok_a, TEMPLATE_A, LlamaConfig, max_position_embeddings=512)
    folder_b = _save_pair(root / "qwen2", tok_b, TEMPLATE_B, Qwen2Config, max_position_embeddings=512)
    cpu = torch.device("cpu")
    return {
        "llama": (load_model(folder_a, cpu, torch.float32), load_tokenizer(folder_a)),
        "qwen2": (load_model(folder_b, cpu, torch.float32), load_tokenizer(folder_b)),
    }


def _items(tokenizer, n: int, seed: int = 1) -> list[ScoreItem]:
    rng = random.Random(seed)
    items = []
    for i in range(n):
        response = _response(rng, rng.randint(2, 9))
        prompt = render_prompt(tokenizer, f"Question {i}: what is {rng.randint(1, 99)} + {rng.randint(1, 99)}?")
        items.append(ScoreItem(f"r{i}", prompt, response, _split(response)))
    return items


def _close(got, want, tol=1e-5):
    assert len(got) == len(want)
    for sentences_got, sentences_want in zip(got, want):
        assert [n for _, n in sentences_got] == [n for _, n in sentences_want]
        for (s_got, n), (s_want, _) in zip(sentences_got, sentences_want):
            if n:
                assert abs(s_got / n - s_want / n) <= tol, (s_got, s_want, n)


@pytest.mark.parametrize("name", ["llama", "qwen2"])
def test_one_pass_matches_per_sentence_reference(pairs, name):
    model, tok = pairs[name]
    items = _items(tok, 6)
    # The fixture must exercise the hard case: tokens whose characters straddle a sentence boundary.
    straddling = 0
    for item in items:
        enc = encode_prompt_response(tok, item.prompt, item.response)
        cuts = {a for a, _ in item.spans[1:]}
        straddling += sum(any(s < c < e for c in cuts) for s, e in enc.offsets)
    assert straddling > 0

    got, stats = score_hf(model, tok, items, chunk_size=16, max_tokens_per_batch=200, progress=False)
    want = reference_score_items(model, tok, items)
    _close(got, want)
    assert stats.n_items == 6 and stats.dtype == "float32" and stats.device == "cpu"
    assert stats.tokens_scored == sum(n for sentences in got for _, n in sentences)
    assert stats.forward_tokens >= stats.tokens_scored
    # Not a vacuous comparison: sentence means differ by far more than the tolerance.
    means = [s / n for sentences in got for s, n in sentences if n]
    assert np.std(means) > 0.1


@pytest.mark.parametrize("name", ["llama", "qwen2"])
def test_clipped_ranks_match_full_softmax_reference(pairs, name):
    model, tok = pairs[name]
    items = _items(tok, 4)
    for clip in (1, 5, 10_000):
        got, _ = score_hf(model, tok, items, chunk_size=7, max_tokens_per_batch=150, progress=False,
                             rank_clip=clip)
        want = reference_score_items(model, tok, items, rank_clip=clip)
        _close([[x[:2] for x in r] for r in got], [[x[:2] for x in r] for r in want])
        assert [[x[2] for x in r] for r in got] == [[x[2] for x in r] for r in want]
        if clip == 1:  # every rank clips to 1: the sum is the token count
            assert all(rank == n for r in got for _, n, rank in r)
    # Not vacuous: with a loose clip, random weights put many targets far from the top.
    ranks = [rank / n for r in got for _, n, rank in r if n]
    assert max(ranks) > 5
    plain, _ = score_hf(model, tok, items, progress=False)  # ranks off: two-field tuples, same sums
    assert all(len(x) == 2 for r in plain for x in r)


def test_tokenizers_differ_on_the_same_text(pairs):
    text = _items(pairs["llama"][1], 1)[0].response
    offsets = [encode_prompt_response(tok, "x", text).offsets for _, tok in pairs.values()]
    assert offsets[0] != offsets[1]


@pytest.mark.parametrize("chunk_size", [1, 7])
def test_chunked_equals_unchunked(pairs, chunk_size):
    model, tok = pairs["qwen2"]
    items = _items(tok, 4, seed=2)
    whole, _ = score_hf(model, tok, items, chunk_size=100_000, progress=False)
    chunked, _ = score_hf(model, tok, items, chunk_size=chunk_size, progress=False)
    _close(chunked, whole, tol=1e-6)


def test_batched_equals_single_and_is_padding_invariant(pairs):
    model, tok = pairs["llama"]
    items = _items(tok, 8, seed=3)
    singles = [score_hf(model, tok, [item], progress=False)[0][0] for item in items]
    together, _ = score_hf(model, tok, items, max_tokens_per_batch=100_000, progress=False)
    _close(together, singles)
    # The shortest item scored next to a long one or next to a short one: same scores.
    by_len = sorted(items, key=lambda it: len(it.response))
    with_long, _ = score_hf(model, tok, [by_len[0], by_len[-1]], max_tokens_per_batch=10**6, progress=False)
    with_short, _ = score_hf(model, tok, [by_len[0], by_len[1]], max_tokens_per_batch=10**6, progress=False)
    _close([with_long[0]], [with_short[0]])


def test_order_preserved(pairs):
    model, tok = pairs["qwen2"]
    items = _items(tok, 7, seed=4)
    scores, _ = score_hf(model, tok, items, max_tokens_per_batch=300, progress=False)
    perm = [3, 0, 6, 1, 5, 2, 4]
    permuted, _ = score_hf(model, tok, [items[i] for i in perm], max_tokens_per_batch=300, progress=False)
    _close(permuted, [scores[i] for i in perm])
    assert [len(s) for s in scores] == [len(item.spans) for item in items]


def test_out_of_memory_halves_the_batch_and_drops_nothing(pairs, monkeypatch):
    model, tok = pairs["llama"]
    items = _items(tok, 6, seed=5)
    want, _ = score_hf(model, tok, items, max_tokens_per_batch=10**6, progress=False)
    real = HfEngine._forward
    sizes = []

    def small_memory(self, sequences, starts, rank_clip=None):
        sizes.append(len(sequences))
        if len(sequences) > 2:
            raise torch.cuda.OutOfMemoryError("simulated")
        return real(self, sequences, starts, rank_clip)

    monkeypatch.setattr(HfEngine, "_forward", small_memory)
    got, stats = score_hf(model, tok, items, max_tokens_per_batch=10**6, progress=False)
    _close(got, want)
    assert sizes[:2] == [6, 3] and max(sizes[2:]) <= 2  # 6 fails, 3 fails, then halves succeed
    assert stats.n_items == 6

    def no_memory(*args):
        raise torch.cuda.OutOfMemoryError("simulated")

    monkeypatch.setattr(HfEngine, "_forward", no_memory)
    with pytest.raises(RdptError, match="out of memory"):
        score_hf(model, tok, items[:1], progress=False)


def test_context_length_error(pairs):
    model, tok = pairs["qwen2"]
    item = _items(tok, 1)[0]
    n = len(encode_prompt_response(tok, item.prompt, item.response).input_ids)
    model.config.max_position_embeddings = n - 1
    try:
        with pytest.raises(RdptError) as err:
            score_hf(model, tok, [item], progress=False)
    finally:
        model.config.max_position_embeddings = 512
    assert str(err.value) == f"response r0: prompt + response is {n} tokens, over the model's context of {n - 1}"


def test_non_finite_logprob_is_an_error(pairs):
    model, tok = pairs["qwen2"]
    item = _items(tok, 1)[0]
    head = model.get_output_embeddings().weight
    saved = head.data.clone()
    head.data[:, 0] = float("nan")
    try:
        with pytest.raises(RdptError, match="response r0: non-finite"):
            score_hf(model, tok, [item], progress=False)
    finally:
        head.data.copy_(saved)


def test_sentence_without_tokens_and_blank_response(pairs):
    model, tok = pairs["qwen2"]
    prompt = render_prompt(tok, "q")
    # The middle "sentence" is one space; that space is the start of the token " Then", which belongs to
    # the sentence holding "T", so the space sentence scores nothing.
    response = "We add. Then stop."
    spans = [(0, 7), (7, 8), (8, len(response))]
    (scores,), _ = score_hf(model, tok, [ScoreItem("k", prompt, response, spans)], progress=False)
    assert scores[1] == (0.0, 0) and scores[0][1] > 0 and scores[2][1] > 0
    blank, _ = score_hf(model, tok, [ScoreItem("b", prompt, "  ", []), ScoreItem("e", prompt, "", [])],
                           progress=False)
    assert blank == [[], []]


def test_invalid_spans_are_rejected(pairs):
    model, tok = pairs["qwen2"]
    prompt = render_prompt(tok, "q")
    for spans in ([(0, 3)], [(0, 3), (4, 7)], [(1, 7)], []):
        with pytest.raises(RdptError, match="response bad"):
            score_hf(model, tok, [ScoreItem("bad", prompt, "abc def", spans)], progress=False)


def test_tokenizer_model_mismatch_is_an_error(pairs):
    _, tok = pairs["qwen2"]
    model = _tiny(GPT2Config, vocab_size=40, n_embd=16, n_layer=1, n_head=2)
    with pytest.raises(RdptError, match="response r0: token id .* outside the model's vocabulary of 40"):
        score_hf(model, tok, _items(tok, 1), progress=False)


def test_spans_as_lists_or_arrays(pairs):
    model, tok = pairs["qwen2"]
    item = _items(tok, 1)[0]
    as_tuples, _ = score_hf(model, tok, [item], progress=False)
    as_lists = ScoreItem(item.key, item.prompt, item.response, [list(s) for s in item.spans])
    as_array = ScoreItem(item.key, item.prompt, item.response, np.asarray(item.spans))
    got, _ = score_hf(model, tok, [as_lists, as_array], progress=False)
    assert got == as_tuples * 2


def _tiny(config_cls, **extra):
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config_cls(initializer_range=0.3, **extra)).eval()


@pytest.mark.parametrize(
    "build",
    [
        # Gemma-2: final_logit_softcapping (and attention softcapping) in forward.
        lambda v: _tiny(Gemma2Config, vocab_size=v, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, head_dim=8, final_logit_softcapping=3.0),
        lambda v: _tiny(GPT2Config, vocab_size=v, n_embd=32, n_layer=2, n_head=4, n_positions=512),
        lambda v: _tiny(GraniteConfig, vocab_size=v, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, logits_scaling=4.0),
        lambda v: _tiny(CohereConfig, vocab_size=v, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, logit_scale=0.5),
    ],
    ids=["gemma2-softcap", "gpt2", "granite-scaling", "cohere-scale"],
)
def test_other_architectures_match_their_logits(pairs, build):
    _, tok = pairs["qwen2"]
    model = build(len(tok))
    items = _items(tok, 3, seed=6)
    got, _ = score_hf(model, tok, items, max_tokens_per_batch=10**6, chunk_size=5, progress=False)
    _close(got, reference_score_items(model, tok, items))


def test_plan_batches_budget_and_order():
    lengths = [5, 50, 20, 20, 3, 70]
    batches = plan_batches(lengths, 60)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(6))
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)
    assert batches[0] == [5]  # 70 > budget: alone
    for b in batches[1:]:
        assert len(b) * lengths[b[0]] <= 60


def test_assign_tokens_example():
    text = "Add 2. Then 3."
    spans = [(0, 7), (7, 14)]
    # "Add", " 2", ". T" (straddles: first visible char "." is in s0), "hen", " ", "3", "." and a
    # zero-width token at the end.
    offsets = [(0, 3), (3, 5), (5, 8), (8, 11), (11, 12), (12, 13), (13, 14), (14, 14)]
    assert assign_tokens(offsets, spans, text) == [0, 0, 0, 1, 1, 1, 1, 1]
    # " Then" starts on the space that closes s0 but goes with its "T".
    assert assign_tokens([(0, 6), (6, 11), (11, 14)], spans, text) == [0, 1, 1]


@st.composite
def _text_spans_offsets(draw):
    text = draw(st.text(alphabet="ab .\n", min_size=0, max_size=40))
    cuts = sorted(set(draw(st.lists(st.integers(0, len(text)), max_size=6))) - {0, len(text)})
    bounds = [0, *cuts, len(text)]
    spans = list(zip(bounds, bounds[1:]))
    if draw(st.booleans()) and spans:  # an empty sentence between two others
        k = draw(st.integers(0, len(spans) - 1))
        spans.insert(k, (spans[k][0], spans[k][0]))
    # Tokens: a tiling of the text, plus zero-width tokens anywhere.
    tcuts = sorted(set(draw(st.lists(st.integers(0, len(text)), max_size=15))) - {0, len(text)})
    tb = [0, *tcuts, len(text)]
    offsets = [(a, b) for a, b in zip(tb, tb[1:]) if a < b]
    for z in draw(st.lists(st.sampled_from(tb), max_size=3)):  # zero-width tokens sit between tokens
        offsets.append((z, z))
    offsets.sort()
    return text, spans or [(0, 0)], offsets


@settings(max_examples=300, deadline=None)
@given(_text_spans_offsets())
def test_assign_tokens_property(case):
    text, spans, offsets = case
    got = assign_tokens(offsets, spans, text)
    assert len(got) == len(offsets)
    for (start, end), sentence in zip(offsets, got):
        a, b = spans[sentence]
        visible = [p for p in range(start, end) if not text[p].isspace()]
        if visible:  # exactly the sentence holding the first visible character
            assert a <= visible[0] < b
        elif start < len(text):  # whitespace or zero-width inside the text: the sentence holding start
            assert a <= start < b
        else:  # zero-width at the very end: clamped to the last sentence
            assert sentence == len(spans) - 1
    assert got == sorted(got)  # tokens in text order never go back to an earlier sentence

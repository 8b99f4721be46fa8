import os

# Tests never reach a hub; fail fast instead of hanging on a lookup.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest


def make_tiny_lm(folder, corpus, *, vocab_size=300, chat_template=None, bos=True, arch="llama",
                 max_positions=512, seed=0, hidden=32, heads=2, head_scale=1.0):
    """A random-weight causal LM with its own byte-level BPE tokenizer, saved like a hub checkpoint."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    specials = ["<pad>", "<eos>"] + (["<bos>"] if bos else [])
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>",
                                   bos_token="<bos>" if bos else None)
    if chat_template is not None:
        fast.chat_template = chat_template
    torch.manual_seed(seed)
    common = dict(vocab_size=len(fast), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=1,
                  num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=max_positions,
                  pad_token_id=fast.pad_token_id, eos_token_id=fast.eos_token_id)
    if arch == "llama":
        model = LlamaForCausalLM(LlamaConfig(**common, bos_token_id=fast.bos_token_id))
    else:
        model = Qwen2ForCausalLM(Qwen2Config(**common))
    if head_scale != 1.0:  # sharper next-token distributions than a random init gives (sampling tests)
        with torch.no_grad():
            model.get_output_embeddings().weight.mul_(head_scale)
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_lm_factory(tmp_path_factory):
    def factory(name, corpus, **kwargs):
        return make_tiny_lm(tmp_path_factory.mktemp(name), corpus, **kwargs)

    return factory


def write_selection_pool(folder, cands: list[dict], sents: list[dict], rng) -> tuple[str, str, dict[str, str]]:
    """A candidate pool on disk as select_data reads it: candidates, their sentences, and random teacher/student
    scores per sentence (mean log-prob in [-3, -0.05], 2 tokens). Returns (candidates, sentences, score dirs)."""
    import pandas as pd

    scores = {"teacher": [], "student": []}
    for sent in sents:
        for rows in scores.values():
            lp = float(rng.uniform(-3, -0.05))
            rows.append({"response_id": sent["response_id"], "sentence_idx": sent["sentence_idx"], "n_tokens": 2,
                         "sum_logprob": 2 * lp, "mean_logprob": lp, "sum_rank": int(rng.integers(2, 40))})
    pd.DataFrame(cands).to_json(folder / "c.jsonl", orient="records", lines=True)
    pd.DataFrame(sents).to_parquet(folder / "s.parquet")
    dirs = {}
    for role, rows in scores.items():
        (folder / role).mkdir()
        pd.DataFrame(rows).to_parquet(folder / role / "scores.parquet")
        dirs[role] = str(folder / role)
    return str(folder / "c.jsonl"), str(folder / "s.parquet"), dirs

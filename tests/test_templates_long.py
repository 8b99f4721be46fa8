"""Templates, thinking and long traces (issue 14, items 1-3): the `think: auto` rule, system prompts and template
arguments, top_k / min_p, and config_overrides for traces longer than a model's own window."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch

from rdpt import RdptError
from rdpt.engines.hf import HfEngine
from rdpt.generation.sample import sample
from rdpt.io.artifacts import read_table, write_jsonl
from rdpt.io.journal import run_fingerprint
from rdpt.models import (
    ModelRef,
    encode_prompt_response,
    load_model,
    load_tokenizer,
    prompt_for_response,
    prompt_overlap,
    render_prompt,
    role_ref,
    spec_ref,
)
from rdpt.params import ModelSpec, SamplingParams, parse_params
from rdpt.provenance.score import ScoreItem, score, score_items
from rdpt.provenance.traced import traced_items
from tests.conftest import make_tiny_lm

# DeepSeek-R1-Distill's template, cut to what matters: since Feb 2025 the generation prompt ends with <think>\n
R1_TEMPLATE = ("{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}{% endif %}"
               "{% for m in messages %}{% if m['role'] == 'user' %}<｜User｜>{{ m['content'] }}{% endif %}{% endfor %}"
               "{% if add_generation_prompt %}<｜Assistant｜><think>\n{% endif %}")
TRACE = "<think>\nI add 2 and 3. That is 5.\n</think>\n\nThe answer is 5."
CORPUS = ["<think>\nI add 2 and 3. That is 5.\n</think>\n\nThe answer is 5.", "<｜User｜>What is 2+3?<｜Assistant｜>",
          "Ana has 7 apples. Solution: add them. ### Problem ### Solution"] * 20


@pytest.fixture(scope="module")
def r1_lm(tmp_path_factory):
    folder = tmp_path_factory.mktemp("r1")
    make_tiny_lm(folder, CORPUS, chat_template=R1_TEMPLATE)
    return str(folder)


def _spans(text, parts):
    spans, at = [], 0
    for p in parts:
        spans.append((at, at + len(p)))
        at += len(p)
    assert at == len(text)
    return spans


# ------------------------------------------------------------------------------------------- item 1: <think>
def test_r1_template_think_overlap_is_cut_from_the_prompt(r1_lm):
    tok = load_tokenizer(r1_lm)
    prompt = render_prompt(tok, "What is 2+3?")
    assert prompt.endswith("<｜Assistant｜><think>\n")
    fixed = prompt_for_response(tok, prompt, TRACE)
    assert fixed == prompt[: -len("<think>\n")] and (fixed + TRACE).count("<think>") == 1
    # the response's tokens and offsets are those of the response alone: sentence spans are unchanged
    a, b = encode_prompt_response(tok, prompt, TRACE), encode_prompt_response(tok, fixed, TRACE)
    assert a.response_ids == b.response_ids and a.offsets == b.offsets and len(b.prompt_ids) < len(a.prompt_ids)
    # no newline after the tag in the response: the prompt's whitespace after the tag goes with it
    assert prompt_for_response(tok, prompt, "<think>Okay.</think>5") == prompt[: -len("<think>\n")]
    # a response sampled after the prompt does not repeat it: untouched
    assert prompt_for_response(tok, prompt, "I add 2 and 3.</think>5") == prompt
    # think: keep renders as is
    keep = load_tokenizer(ModelRef(r1_lm, think="keep"))
    assert prompt_for_response(keep, prompt, TRACE) == prompt


def test_plain_text_never_overlaps():
    assert prompt_overlap("### Problem\nq\n\n### Solution\n", "Solution: add.") == 0
    assert prompt_overlap("Q: x\nA: ", "A: 5") == 0
    assert prompt_overlap("Q: x\nA:\n", "\nA") == 0  # whitespace alone is never an overlap
    assert prompt_overlap("x<think>\n", "<think>\nhi") == len("<think>\n")
    assert prompt_overlap("x<think>\n", "<thinking>") == 0


def test_traced_items_and_scoring_use_the_rule(r1_lm):
    tok = load_tokenizer(r1_lm)
    gens = pd.DataFrame({"response_id": ["b/q/0"], "question": ["What is 2+3?"], "text": [TRACE]}).set_index(
        "response_id")
    parts = ["<think>\nI add 2 and 3. ", "That is 5.\n</think>\n\n", "The answer is 5."]
    sents = pd.DataFrame({"response_id": ["b/q/0"] * 3, "sentence_idx": [0, 1, 2],
                          "start": [s for s, _ in _spans(TRACE, parts)], "end": [e for _, e in _spans(TRACE, parts)]})
    (item,), _ = traced_items(tok, gens, sents)
    assert item.prompt.endswith("<｜Assistant｜>") and (item.prompt + item.response).count("<think>") == 1
    model = load_model(r1_lm, torch.device("cpu"), torch.float32)
    (scores,), stats = score_items(HfEngine(model), tok, [item], progress=False)
    assert len(scores) == 3 and all(n > 0 for _, n in scores) and stats.n_past_original_window is None


def _qwen3():
    from rdpt.real_assets import AssetMissing, asset_path

    try:
        return str(asset_path("qwen3"))
    except AssetMissing as err:
        if os.environ.get("RDPT_REQUIRE_REAL"):
            pytest.fail(f"RDPT_REQUIRE_REAL=1 and {err}")
        pytest.skip(str(err))


@pytest.mark.real
def test_real_qwen3_template_thinking_system_prompt_and_kwargs():
    path = _qwen3()
    tok = load_tokenizer(path)
    prompt = render_prompt(tok, "What is 2+3?")
    assert prompt.endswith("<|im_start|>assistant\n") and "system" not in prompt
    # thinking on (the default): the template opens no block, so a <think> trace is scored as is
    assert prompt_for_response(tok, prompt, TRACE) == prompt
    # enable_thinking: false renders an empty block; a response that repeats it has it once in the context
    off = load_tokenizer(ModelRef(path, chat_template_kwargs={"enable_thinking": False}))
    closed = render_prompt(off, "What is 2+3?")
    assert closed.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    repeat = "<think>\n\n</think>\n\nThe answer is 5."
    assert prompt_for_response(off, closed, repeat) == prompt
    assert prompt_for_response(off, closed, "The answer is 5.") == closed
    # system prompts: the model's, a benchmark's (wins), '' = none
    helpful = load_tokenizer(ModelRef(path, system_prompt="You are a helpful assistant."))
    assert render_prompt(helpful, "q").startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")
    assert render_prompt(helpful, "q", "Please reason step by step.").startswith(
        "<|im_start|>system\nPlease reason step by step.<|im_end|>\n")
    assert render_prompt(helpful, "q", "") == render_prompt(tok, "q")


# -------------------------------------------------------------------------- item 2: system prompts, params
def _params(tmp_path, model, **extra):
    bench = tmp_path / "bench.jsonl"
    write_jsonl(bench, [{"id": f"q{i}", "question": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(2)])
    data = {"device": "cpu", "models": {"teacher": {"path": model}, "student": {"path": model}},
            "data": {"train": {"path": str(bench)}, "benchmarks": {"b": {"path": str(bench)}}},
            "generate": {"num_samples": 1, "max_new_tokens": 6, "batch_size": 2}}
    for key, value in extra.items():
        data[key] = {**data.get(key, {}), **value}
    return parse_params(data)


def test_params_fields_defaults_and_refusals(tmp_path):
    spec = ModelSpec(path="m")
    assert (spec.system_prompt, spec.chat_template_kwargs, spec.think, spec.config_overrides) == (None, None, "auto",
                                                                                                   None)
    assert (SamplingParams().top_k, SamplingParams().min_p) == (0, 0.0)
    for bad, where in [({"chat_template_kwargs": {"add_generation_prompt": False}}, "chat_template_kwargs"),
                       ({"config_overrides": {}}, "config_overrides"), ({"think": "strip"}, "think")]:
        with pytest.raises(RdptError, match=where):
            _params(tmp_path, "m", models={"teacher": {"path": "m", **bad}})
    with pytest.raises(RdptError, match="top_k"):
        _params(tmp_path, "m", generate={"top_k": -1})
    ref = spec_ref(ModelSpec(path="m", system_prompt="S", chat_template_kwargs={"enable_thinking": False},
                             config_overrides={"max_position_embeddings": 8}))
    assert (ref.system_prompt, ref.chat_template_kwargs, ref.config_overrides) == ("S", {"enable_thinking": False},
                                                                                   {"max_position_embeddings": 8})
    # a model trained here (another path) keeps the prompt settings, not the overrides (saved in its config)
    other = spec_ref(ModelSpec(path="m", system_prompt="S", config_overrides={"a": 1}), str(tmp_path))
    assert other.system_prompt == "S" and other.config_overrides is None


def test_prompt_settings_are_journal_keys(tmp_path):
    params = _params(tmp_path, "m")
    keys = [json.dumps(run_fingerprint(params, "score", "teacher", ref, "hf", []), sort_keys=True) for ref in (
        ModelRef("m"), ModelRef("m", system_prompt="S"), ModelRef("m", chat_template_kwargs={"enable_thinking": 0}),
        ModelRef("m", config_overrides={"max_position_embeddings": 9}), ModelRef("m", think="keep"))]
    assert len(set(keys)) == len(keys)
    assert "system_prompt" not in keys[0]  # defaults leave the key as it was


def test_benchmark_system_prompt_reaches_sampling_rows_and_scoring(r1_lm, tmp_path):
    from rdpt.generation.responses import generate
    from rdpt.provenance.segment import segment as segment_stage

    params = _params(tmp_path, r1_lm, models={"teacher": {"path": r1_lm, "system_prompt": "MODEL."}})
    bench = params.data.benchmarks["b"].path
    params = _params(tmp_path, r1_lm, models={"teacher": {"path": r1_lm, "system_prompt": "MODEL."}},
                     data={"benchmarks": {"b": {"path": bench, "system_prompt": "BENCH."}}})
    gen = str(tmp_path / "gen.jsonl")
    generate(params, role_ref(params, "teacher", r1_lm), "teacher", gen)
    rows = read_table(gen, "generations")
    assert set(rows["system_prompt"]) == {"BENCH."}
    sents = str(tmp_path / "s.parquet")
    segment_stage(params, gen, sents, str(tmp_path / "e.parquet"))
    tok = load_tokenizer(role_ref(params, "teacher", r1_lm))
    items, _ = traced_items(tok, rows.set_index("response_id"), read_table(sents, "sentences"))
    assert all(it.prompt.startswith("<bos>BENCH.<｜User｜>") for it in items)


def test_top_k_and_min_p_defaults_are_todays_sampling(r1_lm):
    tok = load_tokenizer(r1_lm, padding_side="left")
    engine = HfEngine(load_model(r1_lm, torch.device("cpu"), torch.float32))
    prompts = [render_prompt(tok, "What is 2+3?"), render_prompt(tok, "Ana has 7 apples.")]
    args = dict(num_samples=3, temperature=1.0, top_p=1.0, max_new_tokens=8, batch_size=2, seed=1)
    before = sample(engine, tok, prompts, **args)
    assert sample(engine, tok, prompts, **args, top_k=0, min_p=0.0) == before
    greedy = sample(engine, tok, prompts, **args, top_k=1)  # top_k reaches generate: every sample is the argmax
    assert all(len({tuple(r["token_ids"]) for r in rows}) == 1 for rows in greedy)
    sharp = sample(engine, tok, prompts, **args, min_p=1.0)  # only the top token survives min_p = 1
    assert [[r["token_ids"] for r in rows] for rows in sharp] == [[r["token_ids"] for r in rows] for rows in greedy]


# ----------------------------------------------------------------------------- item 3: long traces
LONG = " ".join(["Ana adds 2 and 3."] * 12)  # well past 64 positions
PLAIN = "{% for m in messages %}Q: {{ m['content'] }}\nA: {% endfor %}"


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_scoring_past_the_window_needs_the_override_and_is_flagged(tmp_path, arch):
    folder = tmp_path / arch
    make_tiny_lm(folder, [LONG] * 20, arch=arch, max_positions=64, chat_template=PLAIN)
    tok = load_tokenizer(str(folder))
    item = ScoreItem("b/q/0", "Q: 2+3?\nA: ", LONG, [(0, len(LONG))])
    assert len(encode_prompt_response(tok, item.prompt, item.response).input_ids) > 64
    plain = load_model(str(folder), torch.device("cpu"), torch.float32)
    with pytest.raises(RdptError, match="over the model's context of 64"):
        score_items(HfEngine(plain), tok, [item], progress=False)
    overrides = {"max_position_embeddings": 256}
    if arch == "llama":
        overrides["rope_scaling"] = {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64}
    ref = ModelRef(str(folder), config_overrides=overrides)
    model = load_model(ref, torch.device("cpu"), torch.float32)
    assert model.config.max_position_embeddings == 256
    if arch == "llama":
        assert model.config.rope_parameters["rope_type"] == "yarn" and model.config.rope_parameters["factor"] == 4.0
        assert model.config.rope_parameters.get("rope_theta")  # merged, not replaced
    (scores,), stats = score_items(HfEngine(model), tok, [item], progress=False, original_window=64)
    assert np.isfinite(scores[0][0]) and scores[0][1] > 0 and stats.n_past_original_window == 1


def test_an_unknown_override_is_an_error(tmp_path):
    make_tiny_lm(tmp_path, [LONG] * 5, max_positions=64, chat_template=PLAIN)
    with pytest.raises(RdptError, match="max_position_embedding"):
        load_model(ModelRef(str(tmp_path), config_overrides={"max_position_embedding": 256}), torch.device("cpu"),
                   torch.float32)


def test_score_stage_records_the_override_in_cost_json(tmp_path):
    from rdpt.provenance.segment import segment as segment_stage

    folder = tmp_path / "m"
    make_tiny_lm(folder, [LONG] * 20, max_positions=64, chat_template=PLAIN)
    model = str(folder)
    overrides = {"max_position_embeddings": 256,
                 "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64}}
    params = _params(tmp_path, model, models={"teacher": {"path": model, "config_overrides": overrides}})
    gen = tmp_path / "gen.jsonl"
    write_jsonl(gen, [{"response_id": f"b/q{i}/0", "benchmark": "b", "question_id": f"q{i}", "sample_idx": 0,
                       "question": "What is 2+3?", "answer": "5", "text": text, "finish_reason": "stop",
                       "n_tokens": 1} for i, text in enumerate([LONG, "Ana adds 2 and 3."])])
    sents = str(tmp_path / "s.parquet")
    segment_stage(params, str(gen), sents, str(tmp_path / "e.parquet"))
    cost = score(params, role_ref(params, "teacher", model), "teacher", str(gen), sents, str(tmp_path / "scores"))
    saved = json.loads((tmp_path / "scores" / "cost.json").read_text())
    assert saved["config_overrides"] == overrides and saved["original_context_length"] == 64
    assert saved["context_length"] == 256 and saved["n_past_original_window"] == 1 == cost["n_past_original_window"]
    # without overrides nothing is added to cost.json (toy results keep their bytes)
    plain = _params(tmp_path, model)
    with pytest.raises(RdptError, match="context of 64"):
        score(plain, role_ref(plain, "teacher", model), "teacher", str(gen), sents, str(tmp_path / "scores2"))


def test_sft_examples_follow_the_think_rule(r1_lm, tmp_path, monkeypatch):
    import rdpt.training.launch as launch

    seen = {}

    def fake_sft(model, tokenizer, examples, *args, **kwargs):
        seen["examples"] = examples
        return {}

    monkeypatch.setattr(launch, "sft", fake_sft)
    params = _params(tmp_path, r1_lm)
    launch.train(params, ModelRef(r1_lm), [["What is 2+3?", TRACE], ["What is 2+3?", TRACE, "BENCH."]], seed=0,
                 save_dir=tmp_path / "m", trainer_dir=tmp_path / "t")
    first, second = seen["examples"]
    assert first["prompt"].endswith("<｜Assistant｜>") and (first["prompt"] + first["response"]).count("<think>") == 1
    assert second["prompt"].startswith("<bos>BENCH.")

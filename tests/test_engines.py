"""External engines without vLLM: the engine contract, the server client against a stand-in server, the pipeline glue.

The real vLLM engine and a real ``vllm serve`` are tested in tests/test_vllm.py (vLLM's own venv). Here an
HF model plays the engine, so every number has an exact reference::

    pytest tests/test_engines.py -q
"""

from __future__ import annotations

import json
import random
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch

from rdpt import RdptError
from rdpt.artifacts import read_json, read_table, write_jsonl
from rdpt.engines import ExternalEngine, prompt_seed
from rdpt.generate import sample
from rdpt.models import load_model, load_tokenizer, render_prompt
from rdpt.params import ServerParams, parse_params
from rdpt.score import ScoreItem, score_items, score_items_external
from rdpt.segment import segment
from rdpt.server import ServerEngine

TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|user|>{{ m['content'] }}<|end|>{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")
CORPUS = [f"Add {a} and {b}. Then {a} + {b} = {a + b}. The answer is {a + b}." for a in range(30) for b in range(5)]


@pytest.fixture(scope="module")
def tiny(tiny_lm_factory):
    path = tiny_lm_factory("engine_lm", CORPUS, chat_template=TEMPLATE)
    model = load_model(path, torch.device("cpu"), torch.float32)
    return path, model, load_tokenizer(path)


def _full_logprobs(model, seq: list[int]) -> torch.Tensor:
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([seq]), use_cache=False).logits[0].float()
    return torch.log_softmax(logits, dim=-1)  # (L, V): row t predicts token t + 1


def _reference_prompt_logprobs(model, seq: list[int], start: int) -> tuple[np.ndarray, np.ndarray]:
    """What vLLM's prompt_logprobs=0 returns for tokens start.. : log-prob and rank (1 + strictly larger)."""
    lp = _full_logprobs(model, seq)
    rows = lp[torch.arange(start - 1, len(seq) - 1)]  # (n, V)
    targets = torch.tensor(seq[start:])
    chosen = rows.gather(1, targets[:, None]).squeeze(1)
    ranks = (rows > chosen[:, None]).sum(-1) + 1
    return chosen.double().numpy(), ranks.numpy()


def _hf_samples(model, prompt: list[int], seed: int, n: int, temperature: float, max_tokens: int,
                stop_ids: list[int]) -> list[list[int]]:
    """Plain ancestral samples with a private generator: the stand-in for an engine's seeded request."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = list(prompt)
        new: list[int] = []
        for _ in range(max_tokens):
            lp = _full_logprobs(model, ids)[-1] / temperature
            token = int(torch.multinomial(torch.softmax(lp, -1), 1, generator=gen))
            new.append(token)
            ids.append(token)
            if token in stop_ids:
                break
        out.append(new)
    return out


class HFEngine(ExternalEngine):
    """An HF model behind the ExternalEngine contract (records what it was asked)."""

    name = "hf-as-external"

    def __init__(self, model):
        self.model = model
        self.context_length = model.config.max_position_embeddings
        self.vocab_size = model.config.vocab_size
        self.dtype = "float32"
        self.calls: list[dict] = []

    def sample_batch(self, prompts, seeds, *, num_samples, temperature, top_p, max_new_tokens, stop_ids):
        self.calls.append({"prompts": prompts, "seeds": seeds})
        return [_hf_samples(self.model, p, s, num_samples, temperature, max_new_tokens, stop_ids)
                for p, s in zip(prompts, seeds)]

    def prompt_logprobs(self, sequences, starts):
        return [_reference_prompt_logprobs(self.model, s, k) for s, k in zip(sequences, starts)]


def _items(tok, n: int = 6, seed: int = 0) -> list[ScoreItem]:
    rng = random.Random(seed)
    items = []
    for i in range(n):
        a, b = rng.randint(0, 40), rng.randint(0, 9)
        text = f"Add {a} and {b}.  Then {a} + {b} = {a + b}.\nThe answer is {a + b}." if i % 5 else ""
        items.append(ScoreItem(key=f"r{i}", prompt=render_prompt(tok, f"What is {a} + {b}?"), response=text,
                               spans=segment(text) if text else []))
    return items


def test_external_scores_equal_the_one_pass_scorer(tiny):
    _, model, tok = tiny
    items = _items(tok, 8)
    ext, stats = score_items_external(HFEngine(model), tok, items, rank_clip=5)
    ref, _ = score_items(model, tok, items, rank_clip=5, progress=False)
    assert stats.n_items == 8 and stats.device == "hf-as-external" and stats.tokens_scored > 0
    for a, b in zip(ext, ref, strict=True):
        assert len(a) == len(b)
        for (lp_a, n_a, r_a), (lp_b, n_b, r_b) in zip(a, b):
            assert n_a == n_b and r_a == r_b  # same tokens per sentence, same clipped ranks
            assert lp_a == pytest.approx(lp_b, abs=1e-4)
    assert ext[0] == []  # blank response: no sentence, nothing sent to the engine


def test_external_engine_returning_the_wrong_length_is_an_error(tiny):
    _, model, tok = tiny

    class Short(HFEngine):
        def prompt_logprobs(self, sequences, starts):
            return [(lp[:-1], r[:-1]) for lp, r in super().prompt_logprobs(sequences, starts)]

    with pytest.raises(RdptError, match="returned .* log-probs for"):
        score_items_external(Short(model), tok, _items(tok, 2), rank_clip=None)


def test_external_sampling_is_cut_decoded_and_seeded_per_prompt(tiny):
    _, model, _ = tiny
    tok = load_tokenizer(tiny[0], padding_side="left")
    prompts = [render_prompt(tok, f"What is {a} + 1?") for a in range(5)]
    engine = HFEngine(model)
    kwargs = dict(num_samples=2, temperature=1.0, top_p=1.0, max_new_tokens=12, seed=7)
    out = sample(engine, tok, prompts, batch_size=2, **kwargs)
    assert [len(o) for o in out] == [2] * 5
    for rows in out:
        for r in rows:
            assert r["n_tokens"] == len(r["token_ids"]) and 1 <= r["n_tokens"] <= 12
            stops = [t for t in r["token_ids"] if t == tok.eos_token_id]
            assert (r["finish_reason"] == "stop") == bool(stops)
            if stops:  # cut right after the first stop id
                assert r["token_ids"].index(tok.eos_token_id) == len(r["token_ids"]) - 1
            text_ids = r["token_ids"][:-1] if r["finish_reason"] == "stop" else r["token_ids"]
            assert r["text"] == tok.decode(text_ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    # each prompt gets its own hashed seed, whatever the batch it ran in: batch size 5 gives the same samples
    seen = sorted(s for call in engine.calls for s in call["seeds"])
    assert seen == sorted(prompt_seed(7, i) for i in range(5))
    again = sample(HFEngine(model), tok, prompts, batch_size=5, **kwargs)
    assert [[r["token_ids"] for r in rows] for rows in again] == [[r["token_ids"] for r in rows] for rows in out]


def test_prompt_seeds_are_far_apart():
    seeds = [prompt_seed(0, i) for i in range(1000)]
    assert len(set(seeds)) == 1000 and all(0 <= s < 2**56 for s in seeds)
    # vLLM seeds sample k with seed + k: no two prompts may share a stream
    assert min(np.diff(sorted(seeds))) > 64


# ---------------------------------------------------------------------------- a stand-in vLLM server
class StandIn:
    """An OpenAI-compatible /v1 server in a thread, answering like vLLM from an HF model."""

    def __init__(self, model, name: str, fail_first: int = 0, drop_logprobs: bool = False):
        self.model, self.name = model, name
        self.fail_first, self.drop_logprobs = fail_first, drop_logprobs
        self.requests: list[dict] = []
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, code: int, payload: dict) -> None:
                body = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path == "/v1/models":
                    self._send(200, {"data": [{"id": standin.name, "max_model_len": 512}]})
                else:
                    self._send(404, {"message": "not found"})

            def do_POST(self):
                payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                standin.requests.append(payload)
                if standin.fail_first > 0:
                    standin.fail_first -= 1
                    self._send(503, {"message": "warming up"})
                    return
                if payload.get("model") != standin.name:
                    self._send(404, {"message": f"The model `{payload.get('model')}` does not exist."})
                    return
                self._send(200, standin.complete(payload))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def complete(self, payload: dict) -> dict:
        prompts = payload["prompt"] if isinstance(payload["prompt"][0], list) else [payload["prompt"]]
        choices = []
        for p_idx, prompt in enumerate(prompts):
            if payload.get("prompt_logprobs") is not None:
                lp, ranks = _reference_prompt_logprobs(self.model, prompt, 1)
                entries = [None] + [{str(t): {"logprob": float(a), "rank": int(r), "decoded_token": "?"}}
                                    for t, a, r in zip(prompt[1:], lp, ranks)]
                choices.append({"index": p_idx, "text": "", "finish_reason": "length",
                                "prompt_logprobs": None if self.drop_logprobs else entries})
            else:
                samples = _hf_samples(self.model, prompt, payload["seed"], payload["n"], payload["temperature"],
                                      payload["max_tokens"], payload["stop_token_ids"])
                for k, ids in enumerate(samples):
                    choices.append({"index": p_idx * payload["n"] + k, "text": "", "token_ids": ids,
                                    "finish_reason": "stop" if ids[-1] in payload["stop_token_ids"] else "length"})
        return {"id": "cmpl-1", "object": "text_completion", "choices": choices}

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def standin(tiny):
    servers = []

    def start(**kwargs) -> StandIn:
        servers.append(StandIn(tiny[1], tiny[0], **kwargs))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def test_server_scores_equal_the_hf_scorer_in_batches(tiny, standin):
    _, model, tok = tiny
    server = standin()
    engine = ServerEngine(server.url, ServerParams(batch_size=3))
    assert engine.model == tiny[0] and engine.context_length == 512
    items = _items(tok, 8) + _items(tok, 3, seed=1)[1:2]
    ext, stats = score_items_external(engine, tok, items, rank_clip=100)
    ref, _ = score_items(model, tok, items, rank_clip=100, progress=False)
    for a, b in zip(ext, ref, strict=True):
        for (lp_a, n_a, r_a), (lp_b, n_b, r_b) in zip(a, b):
            assert (n_a, r_a) == (n_b, r_b) and lp_a == pytest.approx(lp_b, abs=1e-4)
    # 7 non-blank responses (2 of 9 are blank) in requests of at most 3 token-id prompts
    assert [len(r["prompt"]) for r in server.requests] == [3, 3, 1]
    assert all(r["prompt_logprobs"] == 0 and r["max_tokens"] == 1 for r in server.requests)
    assert stats.device == f"server:{server.url}"


def test_server_sampling_sends_neutral_settings_and_decodes_ids(tiny, standin):
    tok = load_tokenizer(tiny[0], padding_side="left")
    server = standin()
    engine = ServerEngine(server.url, ServerParams(batch_size=2))
    prompts = [render_prompt(tok, f"What is {a} + 2?") for a in range(3)]
    out = sample(engine, tok, prompts, num_samples=2, temperature=0.7, top_p=0.9, max_new_tokens=10,
                 batch_size=8, seed=3)
    assert [len(o) for o in out] == [2, 2, 2]
    sent = sorted(server.requests, key=lambda r: r["seed"])
    assert sorted(r["seed"] for r in sent) == sorted(prompt_seed(3, i) for i in range(3))
    for r in sent:
        assert (r["n"], r["temperature"], r["top_p"], r["max_tokens"]) == (2, 0.7, 0.9, 10)
        assert (r["top_k"], r["repetition_penalty"], r["return_token_ids"]) == (0, 1.0, True)
        assert tok.eos_token_id in r["stop_token_ids"]
    for rows in out:
        for r in rows:
            assert r["n_tokens"] == len(r["token_ids"]) and r["finish_reason"] in ("stop", "length")


def test_server_retries_with_backoff_then_succeeds(tiny, standin, caplog):
    _, _, tok = tiny
    server = standin(fail_first=2)
    engine = ServerEngine(server.url, ServerParams(max_retries=3, backoff_s=0.01))
    scores, _ = score_items_external(engine, tok, _items(tok, 2), rank_clip=None)
    assert len(server.requests) == 3  # two 503s, then the answer
    assert sum("retry" in m for m in caplog.messages) == 2
    assert scores[1] and all(n > 0 for _, n in scores[1])


def test_server_gives_up_with_one_line_after_retries(tiny, standin):
    _, _, tok = tiny
    server = standin(fail_first=10)
    engine = ServerEngine(server.url, ServerParams(max_retries=1, backoff_s=0.0))
    with pytest.raises(RdptError) as err:
        score_items_external(engine, tok, _items(tok, 2), rank_clip=None)
    assert "HTTP 503: warming up after 2 attempts" in str(err.value) and "\n" not in str(err.value)


def test_server_unreachable_is_a_clear_error():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RdptError, match=rf"server http://127.0.0.1:{port}/v1/models: unreachable .* "
                                        r"\(is `vllm serve` running there"):
        ServerEngine(f"http://127.0.0.1:{port}/v1", ServerParams(max_retries=1, backoff_s=0.0))


def test_server_without_prompt_logprobs_is_a_clear_error(tiny, standin):
    _, _, tok = tiny
    server = standin(drop_logprobs=True)
    engine = ServerEngine(server.url, ServerParams())
    with pytest.raises(RdptError, match="no prompt log-probs .* vLLM extension"):
        score_items_external(engine, tok, _items(tok, 2), rank_clip=None)


def test_server_client_error_is_not_retried(tiny, standin):
    server = standin()
    engine = ServerEngine(server.url, ServerParams(max_retries=5, backoff_s=5.0))
    engine.model = "someone-else"
    with pytest.raises(RdptError, match="HTTP 404: The model `someone-else` does not exist"):
        engine.prompt_logprobs([[1, 2, 3]], [1])
    assert len(server.requests) == 1


# ----------------------------------------------------------------------------------- pipeline glue
def _params(tmp_path, teacher: str, student: str, **extra):
    bench = tmp_path / "bench.jsonl"
    write_jsonl(bench, [{"id": f"q{i}", "question": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(3)])
    data = {"device": "cpu", "models": {"teacher": {"path": teacher}, "student": {"path": student}},
            "data": {"train": {"path": str(bench)}, "benchmarks": {"b": {"path": str(bench)}}},
            "generate": {"num_samples": 2, "max_new_tokens": 10, "batch_size": 2}, **extra}
    return parse_params(data)


def test_teacher_on_a_server_generates_and_scores_through_it(tiny, standin, tmp_path):
    """models.teacher.server routes that role to the server; the student stays on HF."""
    from rdpt import pipeline

    path, model, tok = tiny
    server = standin()
    params = _params(tmp_path, path, path, models={"teacher": {"path": path, "server": server.url},
                                                   "student": {"path": path}})
    stats = pipeline.generate(params, "teacher", path, str(tmp_path / "gen.jsonl"))
    assert stats["engine"] == "server" and len(server.requests) == 3  # one request per question
    assert pipeline.generate(params, "student", path, str(tmp_path / "gen_s.jsonl"))["engine"] == "hf"
    gens = read_table(tmp_path / "gen.jsonl", "generations")
    assert len(gens) == 6 and set(gens["finish_reason"]) <= {"stop", "length"}
    # score the server's responses under the teacher (server) and check them against the HF scorer
    pipeline.segment(params, str(tmp_path / "gen.jsonl"), str(tmp_path / "sents.parquet"),
                     str(tmp_path / "empty.jsonl"))
    cost = pipeline.score(params, "teacher", path, str(tmp_path / "gen.jsonl"), str(tmp_path / "sents.parquet"),
                          str(tmp_path / "scores"))
    assert cost["engine"] == "server" and cost["device"] == f"server:{server.url}"
    served = read_table(tmp_path / "scores" / "scores.parquet", "scores")
    pipeline.score(params, "student", path, str(tmp_path / "gen.jsonl"), str(tmp_path / "sents.parquet"),
                   str(tmp_path / "scores_hf"))
    local = read_table(tmp_path / "scores_hf" / "scores.parquet", "scores")
    assert read_json(tmp_path / "scores_hf" / "cost.json")["engine"] == "hf"
    np.testing.assert_allclose(served["sum_logprob"], local["sum_logprob"], atol=1e-4)
    assert served["sum_rank"].tolist() == local["sum_rank"].tolist()


def test_server_param_must_be_a_url(tmp_path):
    with pytest.raises(RdptError, match="server 'localhost:8000'.*expected an http"):
        _params(tmp_path, "t", "s", models={"teacher": {"path": "t", "server": "localhost:8000"},
                                            "student": {"path": "s"}})


def test_vllm_engine_without_vllm_is_a_clear_error(tiny, tmp_path):
    pytest.importorskip("pytest")
    try:
        import vllm  # noqa: F401
        pytest.skip("vllm is installed here (tests/test_vllm.py covers it)")
    except ImportError:
        pass
    from rdpt import pipeline

    params = _params(tmp_path, tiny[0], tiny[0], generate={"engine": "vllm", "num_samples": 1})
    with pytest.raises(RdptError, match=r"engine 'vllm': cannot import vllm .* pip install"):
        pipeline.generate(params, "teacher", tiny[0], str(tmp_path / "g.jsonl"))
    assert not (tmp_path / "g.jsonl").exists()

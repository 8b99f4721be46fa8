"""Engines without vLLM: the engine contract on the HF engine, the server engine against stand-in servers, the glue.

The real vLLM engine and a real ``vllm serve`` are tested in tests/test_vllm.py (vLLM's own venv). Here a
stand-in server answers like vLLM from an HF model (full log-softmax, seeded ancestral samples), so every
number has an exact reference. Every stand-in listens on 127.0.0.1 only; no test sends traffic elsewhere::

    pytest tests/test_engines.py -q
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import logging
import random
import shutil
import socket
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import numpy as np
import pytest
import torch

from rdpt import RdptError
from rdpt.engines.base import prompt_seed
from rdpt.engines.hf import HfEngine
from rdpt.engines.server import ServerEngine, is_loopback, redact, transport_warnings
from rdpt.generation.responses import generate
from rdpt.generation.sample import sample
from rdpt.io.artifacts import read_json, read_table, write_jsonl
from rdpt.io.journal import Journal, run_fingerprint
from rdpt.models import ModelRef, encode_prompt, load_model, load_tokenizer, render_prompt, role_ref
from rdpt.params import ServerParams, parse_params
from rdpt.provenance.score import ScoreItem, reference_score_items, score, score_items
from rdpt.provenance.segment import segment as segment_stage
from rdpt.provenance.segment import split

TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|user|>{{ m['content'] }}<|end|>{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")
CORPUS = [f"Add {a} and {b}. Then {a} + {b} = {a + b}. The answer is {a + b}." for a in range(30) for b in range(5)]
KEY_ENV, KEY = "RDPT_TEST_SERVER_KEY", "sk-test-do-not-leak"


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
    """Plain ancestral samples with a private generator: the stand-in for a server's seeded request."""
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


def _items(tok, n: int = 6, seed: int = 0) -> list[ScoreItem]:
    rng = random.Random(seed)
    items = []
    for i in range(n):
        a, b = rng.randint(0, 40), rng.randint(0, 9)
        text = f"Add {a} and {b}.  Then {a} + {b} = {a + b}.\nThe answer is {a + b}." if i % 5 else ""
        items.append(ScoreItem(key=f"r{i}", prompt=render_prompt(tok, f"What is {a} + {b}?"), response=text,
                               spans=split(text) if text else []))
    return items


def _assert_same_scores(got, ref) -> None:
    for a, b in zip(got, ref, strict=True):
        assert len(a) == len(b)
        for (lp_a, n_a, r_a), (lp_b, n_b, r_b) in zip(a, b):
            assert n_a == n_b and r_a == r_b  # same tokens per sentence, same clipped ranks
            assert lp_a == pytest.approx(lp_b, abs=1e-4)


class Recording(HfEngine):
    """The HF engine, noting what the scorer asked of it."""

    def __init__(self, model, **kwargs):
        super().__init__(model, **kwargs)
        self.batches: list[list[int]] = []

    def token_logprobs(self, sequences, starts, *, rank_clip=None):
        self.batches.append([len(s) for s in sequences])
        return super().token_logprobs(sequences, starts, rank_clip=rank_clip)


def test_engine_scores_equal_the_per_sentence_reference(tiny):
    _, model, tok = tiny
    items = _items(tok, 8)
    engine = Recording(model, max_tokens_per_batch=200)
    got, stats = score_items(engine, tok, items, rank_clip=5, progress=False)
    _assert_same_scores(got, reference_score_items(model, tok, items, rank_clip=5))
    assert stats.n_items == 8 and stats.device == "cpu" and stats.tokens_scored > 0
    assert got[0] == [] and got[5] == []  # blank responses: no sentence ...
    assert sum(len(b) for b in engine.batches) == 6  # ... and nothing sent to the engine for them
    assert len(engine.batches) > 1 and all(sum(b) <= 200 or len(b) == 1 for b in engine.batches)


def test_engine_returning_the_wrong_length_is_an_error(tiny):
    _, model, tok = tiny

    class Short(HfEngine):
        def token_logprobs(self, sequences, starts, *, rank_clip=None):
            return [(lp[:-1], None) for lp, _ in super().token_logprobs(sequences, starts)]

    with pytest.raises(RdptError, match="returned .* log-probs for"):
        score_items(Short(model), tok, _items(tok, 2), rank_clip=None, progress=False)


def test_hf_sampling_is_cut_decoded_and_reproducible(tiny):
    _, model, _ = tiny
    tok = load_tokenizer(tiny[0], padding_side="left")
    prompts = [render_prompt(tok, f"What is {a} + 1?") for a in range(5)]
    engine = HfEngine(model, pad_id=tok.pad_token_id)
    kwargs = {"num_samples": 2, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 12, "batch_size": 2, "seed": 7}
    out = sample(engine, tok, prompts, **kwargs)
    assert [len(o) for o in out] == [2] * 5
    _assert_cut_and_decoded(out, tok, 12)
    again = sample(HfEngine(model, pad_id=tok.pad_token_id), tok, prompts, **kwargs)
    assert _ids(again) == _ids(out)  # HF seeds batch b from (seed, b): the same plan draws the same samples


def test_hf_greedy_is_the_argmax_path_of_each_prompt(tiny):
    """temperature 0 = greedy: each response is the step-by-step argmax of a full, unpadded forward, whatever the
    seed and the batch it runs in (left padding must not change the choice)."""
    _, model, _ = tiny
    tok = load_tokenizer(tiny[0], padding_side="left")
    prompts = [render_prompt(tok, q) for q in ("What is 3 + 1?", "Add 12 and 4 then say it twice.")]
    kwargs = {"num_samples": 1, "temperature": 0.0, "top_p": 0.5, "max_new_tokens": 10, "batch_size": 2}
    out = sample(HfEngine(model, pad_id=tok.pad_token_id), tok, prompts, seed=1, **kwargs)
    assert _ids(sample(HfEngine(model, pad_id=tok.pad_token_id), tok, prompts, seed=2, **kwargs)) == _ids(out)
    for prompt, (got,) in zip(prompts, out):
        seq, ref = encode_prompt(tok, prompt), []
        for _ in range(10):
            nxt = int(_full_logprobs(model, seq)[-1].argmax())
            ref.append(nxt)
            seq.append(nxt)
            if nxt == tok.eos_token_id:
                break
        assert got["token_ids"] == ref


def test_greedy_with_several_samples_is_refused():
    from pydantic import ValidationError

    from rdpt.params.stages import SamplingParams

    with pytest.raises(ValidationError, match="num_samples must be 1"):
        SamplingParams(temperature=0, num_samples=4)
    assert SamplingParams(temperature=0).num_samples == 1


def _ids(out) -> list[list[list[int]]]:
    return [[r["token_ids"] for r in rows] for rows in out]


def _assert_cut_and_decoded(out, tok, max_new_tokens: int) -> None:
    for rows in out:
        for r in rows:
            assert r["n_tokens"] == len(r["token_ids"]) and 1 <= r["n_tokens"] <= max_new_tokens
            stops = [t for t in r["token_ids"] if t == tok.eos_token_id]
            assert (r["finish_reason"] == "stop") == bool(stops)
            if stops:  # cut right after the first stop id
                assert r["token_ids"].index(tok.eos_token_id) == len(r["token_ids"]) - 1
            text_ids = r["token_ids"][:-1] if r["finish_reason"] == "stop" else r["token_ids"]
            assert r["text"] == tok.decode(text_ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)


def test_prompt_seeds_are_far_apart():
    seeds = [prompt_seed(0, i) for i in range(1000)]
    assert len(set(seeds)) == 1000 and all(0 <= s < 2**56 for s in seeds)
    # vLLM seeds sample k with seed + k: no two prompts may share a stream
    assert min(np.diff(sorted(seeds))) > 64


# ---------------------------------------------------------------------------- stand-in vLLM servers
class StandIn:
    """An OpenAI-compatible /v1 server on 127.0.0.1 in a thread, answering like vLLM from an HF model.

    It speaks HTTP/1.1 with keep-alive, as uvicorn does, and counts the connections it accepts. Options:
    ``fail_first`` 503s, ``drop_logprobs``, ``redirect_to`` (an origin; ``redirect_methods`` get
    ``redirect_code`` with a Location there), ``tls`` (an SSL server context).
    """

    def __init__(self, model, name: str, fail_first: int = 0, drop_logprobs: bool = False,
                 redirect_to: str | None = None, redirect_methods: tuple[str, ...] = ("GET", "POST"),
                 redirect_code: int = 302, tls: ssl.SSLContext | None = None):
        self.model, self.name = model, name
        self.fail_first, self.drop_logprobs = fail_first, drop_logprobs
        self.requests: list[dict] = []  # POST payloads
        self.seen: list[tuple[str, str, str | None]] = []  # (method, path, Authorization) of every request
        self.connections = 0
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: connection reuse is visible in `connections`

            def setup(self):
                standin.connections += 1
                super().setup()

            def log_message(self, *args):  # quiet
                pass

            def _send(self, code: int, payload: dict | None, headers: dict | None = None) -> None:
                body = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(code)
                for k, v in {"Content-Type": "application/json", **(headers or {})}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _redirected(self, method: str) -> bool:
                standin.seen.append((method, self.path, self.headers.get("Authorization")))
                if redirect_to is None or method not in redirect_methods:
                    return False
                self._send(redirect_code, None, {"Location": redirect_to + self.path})
                return True

            def do_GET(self):
                if self._redirected("GET"):
                    return
                if self.path == "/v1/models":
                    self._send(200, {"data": [{"id": standin.name, "max_model_len": 512}]})
                else:
                    self._send(404, {"message": "not found"})

            def do_POST(self):
                payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self._redirected("POST"):
                    return
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
        if tls is not None:  # the handshake runs on accept; a client that rejects the certificate is dropped there
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.origin = f"{'https' if tls else 'http'}://127.0.0.1:{self.httpd.server_address[1]}"
        self.url = self.origin + "/v1"
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
    items = _items(tok, 8) + _items(tok, 3, seed=1)[1:2]
    with ServerEngine(server.url, ServerParams(batch_size=3)) as engine:
        assert engine.model == tiny[0] and engine.context_length == 512
        got, stats = score_items(engine, tok, items, rank_clip=100, progress=False)
    ref, _ = score_items(HfEngine(model), tok, items, rank_clip=100, progress=False)
    _assert_same_scores(got, ref)
    # 7 non-blank responses (2 of 9 are blank), in one planned batch, sent as requests of at most 3 prompts
    assert [len(r["prompt"]) for r in server.requests] == [3, 3, 1]
    assert all(r["prompt_logprobs"] == 0 and r["max_tokens"] == 1 for r in server.requests)
    assert stats.device == f"server:{server.url}"
    assert server.connections == 1  # /models and the three requests on one kept-alive connection


def test_server_sampling_seeds_each_prompt_and_reuses_connections(tiny, standin):
    tok = load_tokenizer(tiny[0], padding_side="left")
    server = standin()
    prompts = [render_prompt(tok, f"What is {a} + 2?") for a in range(5)]
    kwargs = {"num_samples": 2, "temperature": 0.7, "top_p": 0.9, "max_new_tokens": 10, "seed": 3}
    with ServerEngine(server.url, ServerParams(batch_size=2)) as engine:
        out = sample(engine, tok, prompts, batch_size=4, **kwargs)
        # each prompt gets its own hashed seed whatever the batch it ran in: other batches, the same samples
        again = sample(engine, tok, prompts, batch_size=1, **kwargs)
    assert [len(o) for o in out] == [2] * 5 and _ids(again) == _ids(out)
    assert len(server.requests) == 10  # one request per prompt (vLLM's seed is per request), each run
    assert sorted(r["seed"] for r in server.requests[:5]) == sorted(prompt_seed(3, i) for i in range(5))
    for r in server.requests:
        assert (r["n"], r["temperature"], r["top_p"], r["max_tokens"]) == (2, 0.7, 0.9, 10)
        assert (r["top_k"], r["repetition_penalty"], r["return_token_ids"]) == (0, 1.0, True)
        assert tok.eos_token_id in r["stop_token_ids"]
    _assert_cut_and_decoded(out, tok, 10)
    # 2 in flight at once over one pooled client: 11 requests on at most 2 connections (urllib opened 11)
    assert 1 <= server.connections <= 2


def test_server_engine_closes_its_client(tiny, standin):
    server = standin()
    engine = ServerEngine(server.url, ServerParams())
    engine.close()
    engine.close()  # idempotent
    assert all(replica.client.is_closed for replica in engine._replicas)


def test_server_retries_with_backoff_then_succeeds(tiny, standin, caplog):
    _, _, tok = tiny
    server = standin(fail_first=2)
    with ServerEngine(server.url, ServerParams(max_retries=3, backoff_s=0.01)) as engine:
        scores, _ = score_items(engine, tok, _items(tok, 2), rank_clip=None, progress=False)
    assert len(server.requests) == 3  # two 503s, then the answer
    retries = [m for m in caplog.messages if "retry" in m]
    assert len(retries) == 2 and "retry 1/3 in 0.0 s" in retries[0] and "retry 2/3" in retries[1]
    assert scores[1] and all(n > 0 for _, n in scores[1])


def test_server_backoff_doubles(tiny, standin, monkeypatch):
    _, _, tok = tiny
    waits: list[float] = []
    monkeypatch.setattr("rdpt.engines.server.time.sleep", waits.append)
    server = standin(fail_first=3)
    with ServerEngine(server.url, ServerParams(max_retries=3, backoff_s=0.5)) as engine:
        score_items(engine, tok, _items(tok, 2), rank_clip=None, progress=False)
    assert waits == [0.5, 1.0, 2.0]


def test_server_gives_up_with_one_line_after_retries(tiny, standin):
    _, _, tok = tiny
    server = standin(fail_first=10)
    with ServerEngine(server.url, ServerParams(max_retries=1, backoff_s=0.0)) as engine, \
            pytest.raises(RdptError) as err:
        score_items(engine, tok, _items(tok, 2), rank_clip=None, progress=False)
    assert "HTTP 503: warming up after 2 attempts" in str(err.value) and "\n" not in str(err.value)
    assert str(err.value).startswith(f"server {server.url}/completions: ")


def _free_port() -> int:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_server_unreachable_is_a_clear_error():
    port = _free_port()
    with pytest.raises(RdptError, match=rf"^server http://127.0.0.1:{port}/v1/models: unreachable .* after 2 "
                                        r"attempts \(is `vllm serve` running there") as err:
        ServerEngine(f"http://127.0.0.1:{port}/v1", ServerParams(max_retries=1, backoff_s=0.0))
    assert "\n" not in str(err.value)


def test_server_without_prompt_logprobs_is_a_clear_error(tiny, standin):
    _, _, tok = tiny
    server = standin(drop_logprobs=True)
    with ServerEngine(server.url, ServerParams()) as engine, \
            pytest.raises(RdptError, match="no prompt log-probs .* vLLM extension"):
        score_items(engine, tok, _items(tok, 2), rank_clip=None, progress=False)


def test_server_client_error_is_not_retried(tiny, standin):
    server = standin()
    with ServerEngine(server.url, ServerParams(max_retries=5, backoff_s=5.0)) as engine:
        engine.model = "someone-else"
        with pytest.raises(RdptError, match="HTTP 404: The model `someone-else` does not exist"):
            engine.token_logprobs([[1, 2, 3]], [1])
    assert len(server.requests) == 1


# ------------------------------------------------------------------ servers rdpt does not trust blindly
@pytest.mark.parametrize("code", [302, 307, 308])
def test_a_redirect_is_never_followed_and_the_key_stays_home(tiny, standin, monkeypatch, code):
    """A 3xx to another port: one line naming where it pointed; the other server sees nothing at all."""
    monkeypatch.setenv(KEY_ENV, KEY)
    elsewhere = standin()
    server = standin(redirect_to=elsewhere.origin.replace("//", "//someone:hunter2@"), redirect_code=code)
    with pytest.raises(RdptError) as err:
        ServerEngine(server.url, ServerParams(api_key_env=KEY_ENV, max_retries=3, backoff_s=5.0))
    line = str(err.value)
    assert line == (f"server {server.url}/models: HTTP {code} redirect to {elsewhere.origin}, not followed (rdpt "
                    "sends requests and the API key to models.<role>.server only: set it to the final URL)")
    assert server.seen == [("GET", "/v1/models", f"Bearer {KEY}")]  # asked once, not retried
    assert elsewhere.seen == [] and elsewhere.connections == 0
    assert "hunter2" not in line and KEY not in line


def test_a_redirected_post_is_an_error_not_an_empty_reply(tiny, standin, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    elsewhere = standin()
    server = standin(redirect_to=elsewhere.origin, redirect_methods=("POST",), redirect_code=302)
    with ServerEngine(server.url, ServerParams(api_key_env=KEY_ENV)) as engine, \
            pytest.raises(RdptError, match=rf"/completions: HTTP 302 redirect to {elsewhere.origin}, not followed"):
        engine.token_logprobs([[1, 2, 3]], [1])
    assert elsewhere.seen == [] and elsewhere.connections == 0


def _self_signed(tmp_path) -> tuple[str, str]:
    """(cert.pem, key.pem) of a self-signed certificate for 127.0.0.1, made here: cryptography, else openssl."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        if shutil.which("openssl") is None:
            pytest.skip("neither the cryptography package nor the openssl CLI is available")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"], check=True, capture_output=True)
        return str(cert), str(key)
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                    x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private, hashes.SHA256()))
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return str(cert), str(key)


@pytest.fixture
def tls_standin(standin, tmp_path):
    cert, key = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return standin(tls=context), cert


def test_a_self_signed_certificate_is_a_tls_error_not_unreachable(tls_standin, caplog):
    server, _ = tls_standin
    with pytest.raises(RdptError) as err:
        ServerEngine(server.url, ServerParams(max_retries=3, backoff_s=5.0))
    line = str(err.value)
    assert line.startswith(f"server {server.url}/models: TLS certificate verification failed (self")
    assert "server.ca_bundle" in line and "vllm serve" not in line and "\n" not in line
    assert not any("retry" in m for m in caplog.messages)  # a certificate does not fix itself: no retries


def test_a_ca_bundle_trusts_the_self_signed_server(tiny, tls_standin, caplog):
    _, _, tok = tiny
    server, cert = tls_standin
    with ServerEngine(server.url, ServerParams(ca_bundle=cert)) as engine:
        assert engine.model == tiny[0]
        scores, _ = score_items(engine, tok, _items(tok, 2), rank_clip=None, progress=False)
    assert scores[1] and not any("verification is off" in m for m in caplog.messages)
    with caplog.at_level(logging.WARNING), ServerEngine(server.url, ServerParams(verify=False)) as engine:
        assert engine.model == tiny[0]
    assert any(f"server {server.url}: TLS certificate verification is off" in m for m in caplog.messages)


def test_a_missing_ca_bundle_is_one_line(tmp_path):
    with pytest.raises(RdptError, match=r"server.ca_bundle '.*nope.pem': cannot load"):
        ServerEngine("https://127.0.0.1:9/v1", ServerParams(ca_bundle=str(tmp_path / "nope.pem")))


def test_tls_params_are_one_choice():
    with pytest.raises(ValueError, match="ca_bundle is set but server.verify is false"):
        ServerParams(ca_bundle="ca.pem", verify=False)


def _params(tmp_path, teacher: str, student: str, **extra):
    bench = tmp_path / "bench.jsonl"
    write_jsonl(bench, [{"id": f"q{i}", "question": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(3)])
    data = {"device": "cpu", "models": {"teacher": {"path": teacher}, "student": {"path": student}},
            "data": {"train": {"path": str(bench)}, "benchmarks": {"b": {"path": str(bench)}}},
            "generate": {"num_samples": 2, "max_new_tokens": 10, "batch_size": 2}, **extra}
    return parse_params(data)


@pytest.mark.parametrize("url", ["http://user:hunter2@127.0.0.1:8000/v1", "https://:hunter2@teacher.example/v1",
                                 "http://hunter2@127.0.0.1:8000/v1"])
def test_credentials_in_the_server_url_are_refused_and_never_printed(tmp_path, url):
    with pytest.raises(RdptError) as err:
        _params(tmp_path, "t", "s", models={"teacher": {"path": "t", "server": url}, "student": {"path": "s"}})
    line = str(err.value)
    assert "models.teacher" in line and "credentials in the URL are refused" in line and "server.api_key_env" in line
    assert "hunter2" not in line and "<redacted>@" in line
    with pytest.raises(RdptError) as err:  # an engine built by hand refuses them too, before any request
        ServerEngine(url, ServerParams())
    assert "credentials in the URL" in str(err.value) and "hunter2" not in str(err.value)


def test_urls_are_redacted_wherever_printed():
    assert redact("https://u:pw@h:1/v1") == "https://<redacted>@h:1/v1"
    assert redact("http://h:1/v1?token=abc") == "http://h:1/v1?<redacted>"
    assert redact("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"


def test_plain_http_with_a_key_to_another_host_warns():
    """The warning logic only: no test contacts an address outside this machine."""
    warn = "the API key goes over plain http to another host"
    for url in ("http://192.0.2.10:8000/v1", "http://teacher.example:8000/v1", "http://10.0.0.7/v1"):
        (line,) = transport_warnings(url, api_key=True, verify=True)
        assert line.startswith(f"server {url}: {warn}") and "use https" in line
    for url in ("http://127.0.0.1:8000/v1", "http://127.8.9.1/v1", "http://localhost:8000/v1", "http://[::1]:80/v1",
                "https://teacher.example/v1"):
        assert transport_warnings(url, api_key=True, verify=True) == []
    assert transport_warnings("http://teacher.example/v1", api_key=False, verify=True) == []
    assert is_loopback("127.0.0.1") and is_loopback("::1") and not is_loopback("teacher.example")


def test_the_engine_logs_the_http_warning_once(monkeypatch, caplog):
    """Through the engine, with an in-memory transport: the request never leaves this process."""
    monkeypatch.setenv(KEY_ENV, KEY)
    asked = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append((str(request.url), request.headers.get("authorization")))
        return httpx.Response(200, json={"data": [{"id": "m", "max_model_len": 64}]})

    with caplog.at_level(logging.WARNING), ServerEngine(
            "http://192.0.2.10:8000/v1", ServerParams(api_key_env=KEY_ENV), transport=httpx.MockTransport(answer)):
        pass
    assert asked == [("http://192.0.2.10:8000/v1/models", f"Bearer {KEY}")]
    warnings = [m for m in caplog.messages if "plain http" in m]
    assert len(warnings) == 1 and KEY not in warnings[0]


def test_two_server_urls_give_two_journal_keys(tmp_path):
    params = _params(tmp_path, "t", "s")
    keys = set()
    for url in ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8001/v1", None):
        fingerprint = run_fingerprint(params, "score", "teacher", ModelRef("t", server=url), "server", [])
        keys.add(Journal(tmp_path / "j", "score-teacher", fingerprint).key)
    assert len(keys) == 3


# ----------------------------------------------------------------------------------- pipeline glue
def test_teacher_on_a_server_generates_and_scores_through_it(tiny, standin, tmp_path):
    """models.teacher.server routes that role to the server; the student stays on HF."""
    path = tiny[0]
    server = standin()
    params = _params(tmp_path, path, path, models={"teacher": {"path": path, "server": server.url},
                                                   "student": {"path": path}})
    journals = str(tmp_path / "journal")
    gen = str(tmp_path / "gen.jsonl")
    stats = generate(params, role_ref(params, "teacher", path), "teacher", gen, journal_dir=journals)
    assert stats["engine"] == "server" and len(server.requests) == 3  # one request per question
    student = generate(params, role_ref(params, "student", path), "student", str(tmp_path / "gen_s.jsonl"),
                       journal_dir=journals)
    assert student["engine"] == "hf"
    gens = read_table(gen, "generations")
    assert len(gens) == 6 and set(gens["finish_reason"]) <= {"stop", "length"}
    # score the server's responses under the teacher (server) and check them against the HF scorer
    sents = str(tmp_path / "sents.parquet")
    segment_stage(params, gen, sents, str(tmp_path / "empty.parquet"))
    cost = score(params, role_ref(params, "teacher", path), "teacher", gen, sents, str(tmp_path / "scores"),
                 journal_dir=journals)
    assert cost["engine"] == "server" and cost["device"] == f"server:{server.url}"
    served = read_table(tmp_path / "scores" / "scores.parquet", "scores")
    score(params, role_ref(params, "student", path), "student", gen, sents, str(tmp_path / "scores_hf"),
          journal_dir=journals)
    local = read_table(tmp_path / "scores_hf" / "scores.parquet", "scores")
    assert read_json(tmp_path / "scores_hf" / "cost.json")["engine"] == "hf"
    np.testing.assert_allclose(served["sum_logprob"], local["sum_logprob"], atol=1e-4)
    assert served["sum_rank"].tolist() == local["sum_rank"].tolist()


def test_server_param_must_be_a_url(tmp_path):
    with pytest.raises(RdptError, match="server 'localhost:8000'.*expected an http"):
        _params(tmp_path, "t", "s", models={"teacher": {"path": "t", "server": "localhost:8000"},
                                            "student": {"path": "s"}})


def test_vllm_engine_without_vllm_is_a_clear_error(tiny, tmp_path):
    try:
        import vllm  # noqa: F401
        pytest.skip("vllm is installed here (tests/test_vllm.py covers it)")
    except ImportError:
        pass
    params = _params(tmp_path, tiny[0], tiny[0], generate={"engine": "vllm", "num_samples": 1})
    out = tmp_path / "g.jsonl"
    with pytest.raises(RdptError, match=r"engine 'vllm': cannot import vllm .* pip install"):
        generate(params, role_ref(params, "teacher", tiny[0]), "teacher", str(out), journal_dir=str(tmp_path / "j"))
    assert not out.exists()

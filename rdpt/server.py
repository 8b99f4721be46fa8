"""The ``server`` engine: a running vLLM OpenAI-compatible server samples and scores for one model.

For a teacher too big for one node (DeepSeek-R1, 671B), vLLM serves it across nodes and rdpt talks to the
server: set ``models.teacher.server: http://host:8000/v1`` and that model's sampling (``teach``,
``generate``, ``candidates``) and scoring go there. The tokenizer still loads from ``models.teacher.path``:
rdpt renders the chat template, tokenizes prompt + response with character offsets, and sends token ids,
so the server scores exactly the tokens the sentences were mapped to. Start a server and try it::

    vllm serve data/toy/models/teacher --host 127.0.0.1 --port 8011 --dtype float32 &
    python -c "from rdpt.server import ServerEngine; from rdpt.params import ServerParams; \\
        e = ServerEngine('http://127.0.0.1:8011/v1', ServerParams()); print(e.prompt_logprobs([[0, 3, 203]], [1]))"

Requests (``/v1/completions``, vLLM's extensions ``prompt_logprobs``, ``return_token_ids``,
``stop_token_ids``, token-id prompts):

- scoring: ``server.batch_size`` sequences per request, ``prompt_logprobs: 0`` (the log-prob and rank of
  each prompt token), one generated token;
- sampling: one request per prompt with its own seed (:func:`rdpt.engines.prompt_seed`), ``batch_size``
  in flight at once, ``return_token_ids`` so rdpt decodes and counts tokens itself.

A connection error, a timeout, HTTP 429 or 5xx is retried ``server.max_retries`` times, waiting
``backoff_s``, then twice that, and so on; any other HTTP error fails at once with the server's message.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from rdpt import RdptError
from rdpt.engines import ExternalEngine
from rdpt.params import ServerParams

log = logging.getLogger(__name__)

RETRY_STATUS = {408, 429, 500, 502, 503, 504}


class ServerEngine(ExternalEngine):
    name = "server"

    def __init__(self, url: str, params: ServerParams, *, model: str | None = None, generation_config=None):
        self.url = url.rstrip("/")
        self.params = params
        self.generation_config = generation_config
        self._headers = {"Content-Type": "application/json"}
        if params.api_key_env:
            key = os.environ.get(params.api_key_env)
            if not key:
                raise RdptError(f"server.api_key_env: environment variable {params.api_key_env} is not set")
            self._headers["Authorization"] = f"Bearer {key}"
        listed = self._request("GET", "/models").get("data") or []
        if not listed:
            raise RdptError(f"server {self.url}: /models lists no model")
        names = [m.get("id") for m in listed]
        # The served name is the path given to `vllm serve` unless --served-model-name says otherwise.
        entry = next((m for m in listed if m.get("id") == model), listed[0] if len(listed) == 1 else None)
        if entry is None:
            raise RdptError(f"server {self.url}: serves {names}, none named {model!r}")
        self.model = entry["id"]
        self.context_length = entry.get("max_model_len")

    def describe(self) -> str:
        return f"server:{self.url}"

    # -------------------------------------------------------------------------------------------- HTTP
    def _request(self, method: str, path: str, payload: dict | None = None) -> dict:
        """One JSON request with retries; every failure ends as a one-line RdptError naming the server."""
        body = None if payload is None else json.dumps(payload).encode()
        delay = self.params.backoff_s
        for attempt in range(self.params.max_retries + 1):
            req = urllib.request.Request(self.url + path, data=body, method=method, headers=self._headers)
            try:
                with urllib.request.urlopen(req, timeout=self.params.timeout_s) as resp:
                    return json.loads(resp.read().decode())
            except urllib.error.HTTPError as err:
                detail = _error_message(err)
                if err.code not in RETRY_STATUS:
                    raise RdptError(f"server {self.url}{path}: HTTP {err.code}: {detail}") from None
                problem = f"HTTP {err.code}: {detail}"
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as err:
                reason = getattr(err, "reason", err)
                problem = f"unreachable ({reason})"
            except json.JSONDecodeError:
                raise RdptError(f"server {self.url}{path}: the reply is not JSON (is this a vLLM server?)") from None
            if attempt == self.params.max_retries:
                break
            log.warning("server %s%s: %s; retry %d/%d in %.1f s", self.url, path, problem, attempt + 1,
                        self.params.max_retries, delay)
            time.sleep(delay)
            delay *= 2
        tries = self.params.max_retries + 1
        raise RdptError(f"server {self.url}{path}: {problem} after {tries} attempt{'s' * (tries > 1)} "
                        f"(is `vllm serve` running there? check models.<role>.server)")

    def _complete(self, payload: dict) -> list[dict]:
        reply = self._request("POST", "/completions", {"model": self.model, **payload})
        choices = reply.get("choices")
        if not isinstance(choices, list):
            raise RdptError(f"server {self.url}/completions: the reply has no choices")
        return sorted(choices, key=lambda c: c.get("index", 0))

    # ---------------------------------------------------------------------------------------- engine API
    def sample_batch(self, prompts, seeds, *, num_samples, temperature, top_p, max_new_tokens, stop_ids):
        def one(prompt_and_seed: tuple[list[int], int]) -> list[list[int]]:
            prompt, seed = prompt_and_seed
            choices = self._complete({
                "prompt": list(prompt), "n": num_samples, "temperature": temperature, "top_p": top_p,
                # explicit neutral values: the server would otherwise apply the model's generation_config
                "top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0, "presence_penalty": 0.0,
                "frequency_penalty": 0.0, "max_tokens": max_new_tokens, "seed": seed,
                "stop_token_ids": list(stop_ids), "return_token_ids": True, "skip_special_tokens": True,
            })
            if len(choices) != num_samples or any(c.get("token_ids") is None for c in choices):
                raise RdptError(f"server {self.url}/completions: expected {num_samples} choices with token_ids "
                                f"(vLLM's return_token_ids), got {len(choices)}")
            return [list(c["token_ids"]) for c in choices]

        with ThreadPoolExecutor(max_workers=self.params.batch_size) as pool:
            return list(pool.map(one, zip(prompts, seeds, strict=True)))

    def prompt_logprobs(self, sequences, starts):
        out: list[tuple[np.ndarray, np.ndarray]] = []
        size = self.params.batch_size
        for first in range(0, len(sequences), size):
            chunk = sequences[first : first + size]
            choices = self._complete({"prompt": [list(s) for s in chunk], "max_tokens": 1, "prompt_logprobs": 0,
                                      "temperature": 1.0})
            if len(choices) != len(chunk):
                raise RdptError(f"server {self.url}/completions: {len(chunk)} prompts gave {len(choices)} choices")
            for seq, start, choice in zip(chunk, starts[first : first + size], choices, strict=True):
                out.append(_token_scores(self.url, seq, start, choice.get("prompt_logprobs")))
        return out


def _token_scores(url: str, seq: list[int], start: int, entries) -> tuple[np.ndarray, np.ndarray]:
    """(log-probs, ranks) of ``seq[start:]`` from a choice's ``prompt_logprobs`` (JSON keys are token ids)."""
    if not isinstance(entries, list) or len(entries) != len(seq):
        raise RdptError(f"server {url}: the reply has no prompt log-probs (a vLLM server is needed: "
                        f"prompt_logprobs is a vLLM extension of /v1/completions)")
    lps = np.empty(len(seq) - start, dtype=np.float64)
    ranks = np.empty(len(seq) - start, dtype=np.int64)
    for j in range(start, len(seq)):
        entry = (entries[j] or {}).get(str(seq[j]))
        if entry is None or entry.get("logprob") is None or entry.get("rank") is None:
            raise RdptError(f"server {url}: no log-prob and rank for prompt token {j} (id {seq[j]})")
        lps[j - start], ranks[j - start] = entry["logprob"], entry["rank"]
    return lps, ranks


def _error_message(err: urllib.error.HTTPError) -> str:
    try:
        data = json.loads(err.read().decode())
        message = data.get("message") or (data.get("error") or {}).get("message") or str(data)
    except Exception:  # noqa: BLE001 - not JSON: the status line is all there is
        message = err.reason
    return " ".join(str(message).split())[:300]

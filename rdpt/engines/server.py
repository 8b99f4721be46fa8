"""The ``server`` engine: a running vLLM OpenAI-compatible server samples and scores for one model.

For a teacher too big for one node (DeepSeek-R1, 671B), vLLM serves it across nodes and rdpt talks to the
server: set ``models.teacher.server: http://host:8000/v1`` and that model's sampling (``teach``,
``generate``, ``candidates``) and scoring go there. The tokenizer still loads from ``models.teacher.path``:
rdpt renders the chat template, tokenizes prompt + response with character offsets, and sends token ids,
so the server scores exactly the tokens the sentences were mapped to. Start a server and try it::

    vllm serve data/toy/models/teacher --host 127.0.0.1 --port 8011 --dtype float32 &
    python -c "from rdpt.engines.server import ServerEngine; from rdpt.params import ServerParams; \\
        e = ServerEngine('http://127.0.0.1:8011/v1', ServerParams()); print(e.token_logprobs([[0, 3, 203]], [1]))"

Requests (``/v1/completions``, vLLM's extensions ``prompt_logprobs``, ``return_token_ids``,
``stop_token_ids``, token-id prompts), all over one pooled ``httpx.Client`` per engine (kept-alive
connections, at most ``server.batch_size`` of them):

- scoring: ``server.batch_size`` sequences per request, ``prompt_logprobs: 0`` (the log-prob and rank of
  each prompt token), one generated token;
- sampling: one request per prompt with its own seed (:func:`rdpt.engines.base.prompt_seed`), ``batch_size``
  in flight at once, ``return_token_ids`` so rdpt decodes and counts tokens itself. Not one request per
  batch: vLLM's ``seed`` is a request field that every prompt of a list prompt gets as is
  (``CompletionRequest.to_sampling_params`` runs once per prompt on the same request), so a list would
  give all prompts of a batch one random stream, and samples would depend on the batch a prompt ran in.

Several replicas of one model (``models.teacher.server: [http://a:8000/v1, http://b:8000/v1]``, several
``vllm serve`` processes): one client per replica, and each request (a prompt to sample, a scoring chunk) goes
to the replica with the fewest requests in flight (ties in turn). Results do not depend on which replica
answered: each prompt's seed is its own, and scores are per sequence. The replicas must serve the same model
name; the API key, TLS and redirect rules below apply to every one of them.

A connection error, a timeout, HTTP 429 or 5xx is retried ``server.max_retries`` times, waiting
``backoff_s``, then twice that, and so on; any other HTTP error fails at once with the server's message.

What rdpt does not trust the server with (docs/security.md): a redirect is never followed (a 3xx fails
with one line naming where it pointed, so the API key and the prompts go nowhere but
``models.<role>.server``); a URL with ``user:password@`` is refused and URLs are printed without
credentials; a TLS certificate that does not verify is an error of its own, not retried (a private CA:
``server.ca_bundle``); an API key sent over plain http to a host that is not this machine logs a warning.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import re
import ssl
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urljoin, urlsplit

import httpx
import numpy as np

from rdpt import RdptError
from rdpt.engines.base import Engine, prompt_seed
from rdpt.params import ServerParams

log = logging.getLogger(__name__)

RETRY_STATUS = {408, 429, 500, 502, 503, 504}
CHECK_URL = "check models.<role>.server"


def redact(url: str) -> str:
    """``url`` fit for a log or an error line: ``user:password@`` and any ``?query`` replaced."""
    url = re.sub(r"(?<=//)[^/?#\s]*@", "<redacted>@", str(url))
    return re.sub(r"\?\S*", "?<redacted>", url)


def origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url``, without credentials (where a redirect points)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:  # a malformed Location: show what can be shown safely
        return redact(url)
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def is_loopback(host: str | None) -> bool:
    """True for this machine's own addresses (127.0.0.0/8, ::1, localhost); names are never resolved."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost: it may be anywhere
        return False


def transport_warnings(url: str, *, api_key: bool, verify: bool) -> list[str]:
    """One-line warnings about how a server is reached (logged once, when the engine opens)."""
    parts = urlsplit(url)
    shown = f"server {redact(url)}"
    out = []
    if api_key and parts.scheme == "http" and not is_loopback(parts.hostname):
        out.append(f"{shown}: the API key goes over plain http to another host, readable on the way; "
                   "use https (or an SSH tunnel to 127.0.0.1)")
    if not verify and parts.scheme == "https":
        out.append(f"{shown}: TLS certificate verification is off (server.verify: false): anyone on the way "
                   "can pose as the server")
    return out


def _tls_problem(err: BaseException) -> tuple[str, bool] | None:
    """(what failed, retry?) when ``err`` comes from TLS, else None; httpx chains the ssl error as the cause."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, ssl.SSLCertVerificationError):
            reason = err.verify_message or err.reason or "certificate rejected"
            return f"TLS certificate verification failed ({reason})", False
        if isinstance(err, (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)):
            return f"TLS connection closed ({err.reason or type(err).__name__})", True  # may be transient
        if isinstance(err, ssl.SSLError):  # e.g. https to a plain-http port: the same every time
            return f"TLS error ({err.reason or err})", False
        err = err.__cause__ or err.__context__
    return None


class _Replica:
    """One base URL of the engine, its pooled client and how many requests it has in flight."""

    def __init__(self, url: str, client: httpx.Client):
        self.url, self.shown, self.client, self.in_flight = url, redact(url), client, 0


def _check_url(url: str) -> None:
    shown = redact(url)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as err:
        raise RdptError(f"server {shown}: not a valid URL ({err}); {CHECK_URL}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RdptError(f"server {shown}: expected an http(s) URL such as http://127.0.0.1:8000/v1")
    if "@" in parts.netloc:  # params refuse these too; an engine built by hand must not print or send them
        raise RdptError(f"server {shown}: credentials in the URL are not accepted; put the API key in "
                        "the environment variable named by server.api_key_env")


class ServerEngine(Engine):
    name = "server"

    def __init__(self, url: str | Sequence[str], params: ServerParams, *, model: str | None = None,
                 generation_config=None, transport: httpx.BaseTransport | None = None):
        """``url``: one base URL, or several (replicas of one model: each request goes to the one with the
        fewest in flight). ``transport``: an httpx transport instead of the network (tests, a proxy)."""
        urls = [url.rstrip("/")] if isinstance(url, str) else [u.rstrip("/") for u in url]
        if not urls or len(set(urls)) < len(urls):
            raise RdptError(f"server: expected one base URL or several distinct ones, got {len(urls)}")
        self.url = urls[0]
        self.shown = ",".join(redact(u) for u in urls)  # the URLs as logs and errors print them
        self.params = params
        self.generation_config = generation_config
        for one in urls:
            _check_url(one)
        headers = {}
        self._key = None
        if params.api_key_env:
            self._key = os.environ.get(params.api_key_env)
            if not self._key:
                raise RdptError(f"server.api_key_env: environment variable {params.api_key_env} is not set")
            headers["Authorization"] = f"Bearer {self._key}"  # the same key and checks for every replica
        for one in urls:
            for line in transport_warnings(one, api_key=self._key is not None, verify=params.verify):
                log.warning("%s", line)
        # One client per replica for the engine's life: connections are kept alive and reused by every request.
        # follow_redirects=False (httpx's default, stated): a 3xx is reported, never followed (see _request).
        verify = self._tls_verify()
        self._replicas = [_Replica(one, httpx.Client(
            headers=headers, timeout=httpx.Timeout(params.timeout_s), follow_redirects=False,
            limits=httpx.Limits(max_connections=params.batch_size, max_keepalive_connections=params.batch_size),
            verify=verify, transport=transport)) for one in urls]
        self._lock = threading.Lock()
        self._turn = 0  # where the search for the least busy replica starts: ties go round-robin
        self._closed = False
        try:
            entries = [self._served(replica, model) for replica in self._replicas]
        except BaseException:
            self.close()
            raise
        if len({e["id"] for e in entries}) > 1:
            self.close()
            raise RdptError(f"server {self.shown}: the replicas serve different models "
                            f"({[e['id'] for e in entries]}); list replicas of one model only")
        self.model = entries[0]["id"]
        windows = [e.get("max_model_len") for e in entries]
        self.context_length = None if None in windows else min(windows)  # the smallest replica bounds them all

    def _served(self, replica: _Replica, model: str | None) -> dict:
        """The /models entry of ``model`` on ``replica``."""
        listed = self._request("GET", "/models", replica=replica).get("data") or []
        if not listed:
            raise RdptError(f"server {replica.shown}: /models lists no model")
        names = [m.get("id") for m in listed]
        # The served name is the path given to `vllm serve` unless --served-model-name says otherwise.
        entry = next((m for m in listed if m.get("id") == model), listed[0] if len(listed) == 1 else None)
        if entry is None:
            raise RdptError(f"server {replica.shown}: serves {names}, none named {model!r}")
        return entry

    def _tls_verify(self) -> ssl.SSLContext | bool:
        if self.params.ca_bundle is None:
            return self.params.verify
        try:  # this bundle only, as `curl --cacert` does: a private CA or the server's self-signed certificate
            return ssl.create_default_context(cafile=self.params.ca_bundle)
        except (OSError, ssl.SSLError) as err:
            raise RdptError(f"server.ca_bundle {self.params.ca_bundle!r}: cannot load ({err})") from None

    def describe(self) -> str:
        return f"server:{self.shown}"

    def close(self) -> None:
        if not getattr(self, "_closed", True):
            self._closed = True
            for replica in self._replicas:
                replica.client.close()

    @property
    def in_parallel(self) -> int:
        """Requests in flight at once: ``server.batch_size`` per replica."""
        return self.params.batch_size * len(self._replicas)

    @contextlib.contextmanager
    def _least_busy(self):
        """The replica with the fewest requests in flight, held for one request (least-in-flight dispatch)."""
        with self._lock:
            n = len(self._replicas)
            order = [self._replicas[(self._turn + k) % n] for k in range(n)]
            replica = min(order, key=lambda r: r.in_flight)
            self._turn = (self._replicas.index(replica) + 1) % n
            replica.in_flight += 1
        try:
            yield replica
        finally:
            with self._lock:
                replica.in_flight -= 1

    # -------------------------------------------------------------------------------------------- HTTP
    def _clean(self, text: str) -> str:
        """One line of at most 300 characters, never holding the API key (a server may echo a header)."""
        text = " ".join(str(text).split())[:300]
        return text.replace(self._key, "<api key>") if self._key else text

    def _request(self, method: str, path: str, payload: dict | None = None, *, replica: _Replica) -> dict:
        """One JSON request to ``replica`` with retries; every failure ends as a one-line RdptError naming it."""
        where = f"server {replica.shown}{path}"
        delay = self.params.backoff_s
        hint = f"is `vllm serve` running there? {CHECK_URL}"
        for attempt in range(self.params.max_retries + 1):
            try:
                resp = replica.client.request(method, replica.url + path, json=payload)
            except httpx.TimeoutException as err:
                problem = f"timed out after {self.params.timeout_s:g} s ({type(err).__name__})"
                hint = f"a slow server? raise server.timeout_s; {CHECK_URL}"
            except httpx.TransportError as err:
                tls = _tls_problem(err)
                if tls is None:
                    problem = f"unreachable ({self._clean(err) or type(err).__name__})"
                else:
                    problem, retry = tls
                    tls_hint = ("a private CA or a self-signed certificate? set server.ca_bundle to its PEM file; "
                                "plain http? use an http:// URL")
                    if not retry:
                        raise RdptError(f"{where}: {problem} ({tls_hint})") from None
                    hint = tls_hint
            except httpx.HTTPError as err:  # an invalid request (URL, headers): the same on every try
                raise RdptError(f"{where}: {type(err).__name__}: {self._clean(err)}; {CHECK_URL}") from None
            else:
                code = resp.status_code
                if 300 <= code < 400:
                    # Never followed: a redirect could send the API key and the prompts to another host, and a
                    # POST answered by 302 would come back as an empty GET. Where it pointed, without credentials.
                    location = resp.headers.get("location")
                    to = origin(urljoin(replica.url + path, location)) if location else "no Location"
                    raise RdptError(f"{where}: HTTP {code} redirect to {to}, not followed (rdpt sends requests "
                                    f"and the API key to models.<role>.server only: set it to the final URL)")
                if code >= 400:
                    detail = self._clean(_error_message(resp))
                    if code not in RETRY_STATUS:
                        key_hint = " (check server.api_key_env)" if code in (401, 403) else ""
                        raise RdptError(f"{where}: HTTP {code}: {detail}{key_hint}") from None
                    problem = f"HTTP {code}: {detail}"
                else:
                    try:
                        reply = resp.json()
                    except ValueError:
                        raise RdptError(f"{where}: the reply is not JSON (is this a vLLM server?)") from None
                    if not isinstance(reply, dict):
                        raise RdptError(f"{where}: the reply is not a JSON object (is this a vLLM server?)")
                    return reply
            if attempt == self.params.max_retries:
                break
            log.warning("%s: %s; retry %d/%d in %.1f s", where, problem, attempt + 1, self.params.max_retries,
                        delay)
            time.sleep(delay)
            delay *= 2
        tries = self.params.max_retries + 1
        raise RdptError(f"{where}: {problem} after {tries} attempt{'s' * (tries > 1)} ({hint})")

    def _complete(self, payload: dict) -> tuple[list[dict], str]:
        """The choices of one /completions request (on the least busy replica), and that replica's URL."""
        with self._least_busy() as replica:
            reply = self._request("POST", "/completions", {"model": self.model, **payload}, replica=replica)
        choices = reply.get("choices")
        if not isinstance(choices, list):
            raise RdptError(f"server {replica.shown}/completions: the reply has no choices")
        return sorted(choices, key=lambda c: c.get("index", 0)), replica.shown

    # ---------------------------------------------------------------------------------------- engine API
    def sample(self, prompts, *, seed, batch_index, prompt_indices, num_samples, temperature, top_p, max_new_tokens,
               stop_ids, top_k=0, min_p=0.0, return_logprobs=False):
        if return_logprobs:  # OpenAI-style completions return log-probs but no ranks, which scoring needs
            raise RdptError(f"server {self.shown}: keep_logprobs needs the hf or vllm engine (a server's "
                            "completions carry no token ranks); set keep_logprobs: false")
        seeds = [prompt_seed(seed, i) for i in prompt_indices]  # per prompt: independent of the batch

        def one(prompt: list[int], seed: int) -> list[list[int]]:
            choices, shown = self._complete({
                "prompt": list(prompt), "n": num_samples, "temperature": temperature, "top_p": top_p,
                # explicit neutral values: the server would otherwise apply the model's generation_config
                "top_k": top_k, "min_p": min_p, "repetition_penalty": 1.0, "presence_penalty": 0.0,
                "frequency_penalty": 0.0, "max_tokens": max_new_tokens, "seed": seed,
                "stop_token_ids": list(stop_ids), "return_token_ids": True, "skip_special_tokens": True,
            })
            if len(choices) != num_samples or any(c.get("token_ids") is None for c in choices):
                raise RdptError(f"server {shown}/completions: expected {num_samples} choices with token_ids "
                                f"(vLLM's return_token_ids), got {len(choices)}")
            return [list(c["token_ids"]) for c in choices]

        # One request per prompt (its own seed, see the module docstring), batch_size per replica in flight.
        pool = ThreadPoolExecutor(max_workers=max(1, min(self.in_parallel, len(prompts))))
        try:
            futures = [pool.submit(one, p, s) for p, s in zip(prompts, seeds, strict=True)]
            return [f.result() for f in futures]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # after a failure, prompts not yet sent are dropped

    def token_logprobs(self, sequences, starts, *, rank_clip=None):
        size = self.params.batch_size

        def one(first: int) -> list[tuple[np.ndarray, np.ndarray]]:
            chunk = sequences[first : first + size]
            choices, shown = self._complete({"prompt": [list(s) for s in chunk], "max_tokens": 1,
                                             "prompt_logprobs": 0, "temperature": 1.0})
            if len(choices) != len(chunk):
                raise RdptError(f"server {shown}/completions: {len(chunk)} prompts gave {len(choices)} choices")
            return [_token_scores(shown, seq, start, choice.get("prompt_logprobs"))
                    for seq, start, choice in zip(chunk, starts[first : first + size], choices, strict=True)]

        # One request of batch_size sequences in flight per replica (one replica: one after the other, as before)
        firsts = range(0, len(sequences), size)
        pool = ThreadPoolExecutor(max_workers=max(1, min(len(self._replicas), len(firsts))))
        try:
            futures = [pool.submit(one, first) for first in firsts]
            return [scores for f in futures for scores in f.result()]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


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


def _error_message(resp: httpx.Response) -> str:
    try:
        data = resp.json()
        error = data.get("error")
        message = data.get("message") or (error.get("message") if isinstance(error, dict) else error) or str(data)
    except Exception:  # noqa: BLE001 - not JSON: the status line is all there is
        message = resp.reason_phrase or f"HTTP {resp.status_code}"
    return str(message)

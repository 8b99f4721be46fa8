"""Several ``vllm serve`` replicas of one model (``models.<role>.server: [url, url]``): requests are spread over
them (least in flight), every replica gets the API key and the same refusals, and samples and scores equal the
single-server ones, whichever replica answered. Stand-in servers on 127.0.0.1 (tests/test_engines.py)::

    pytest tests/test_server_replicas.py -q
"""

from __future__ import annotations

import logging

import httpx
import pytest

from rdpt import RdptError
from rdpt.engines.server import ServerEngine
from rdpt.generation.sample import sample
from rdpt.models import load_tokenizer, render_prompt, role_ref
from rdpt.params import ServerParams
from rdpt.provenance.score import score_items
from tests import test_engines
from tests.test_engines import KEY, KEY_ENV, _assert_same_scores, _ids, _items, _params

tiny, standin = test_engines.tiny, test_engines.standin  # its fixtures: the toy LM and the stand-in servers


def _prompts(tok, n: int = 8) -> list[list[int]]:
    return [render_prompt(tok, f"What is {a} + 2?") for a in range(n)]


def test_two_replicas_both_sample_and_give_the_single_server_samples(tiny, standin):
    tok = load_tokenizer(tiny[0], padding_side="left")
    one, a, b = standin(), standin(), standin()
    kwargs = {"num_samples": 2, "temperature": 0.8, "top_p": 0.95, "max_new_tokens": 8, "seed": 5}
    with ServerEngine(one.url, ServerParams(batch_size=2)) as single:
        want = sample(single, tok, _prompts(tok), batch_size=4, **kwargs)
    with ServerEngine([a.url, b.url], ServerParams(batch_size=2)) as pair:
        assert pair.describe() == f"server:{a.url},{b.url}" and pair.in_parallel == 4
        got = sample(pair, tok, _prompts(tok), batch_size=4, **kwargs)
    assert _ids(got) == _ids(want)
    # 8 prompts, one request each: every prompt went to one replica, and both replicas took a share
    assert len(a.requests) + len(b.requests) == 8 and a.requests and b.requests
    seeds = sorted(r["seed"] for r in a.requests + b.requests)
    assert seeds == sorted(r["seed"] for r in one.requests)  # each prompt kept its own seed


def test_two_replicas_both_score_and_give_the_single_server_scores(tiny, standin):
    _, _, tok = tiny
    one, a, b = standin(), standin(), standin()
    items = _items(tok, 8)
    with ServerEngine(one.url, ServerParams(batch_size=2)) as single:
        want, _ = score_items(single, tok, items, rank_clip=100, progress=False)
    with ServerEngine([a.url, b.url], ServerParams(batch_size=2)) as pair:
        got, stats = score_items(pair, tok, items, rank_clip=100, progress=False)
    _assert_same_scores(got, want)
    chunks = [len(r["prompt"]) for r in a.requests + b.requests]
    assert sum(chunks) == sum(len(r["prompt"]) for r in one.requests) and max(chunks) <= 2
    assert a.requests and b.requests and stats.device == f"server:{a.url},{b.url}"


def test_least_in_flight_goes_to_the_idle_replica(tiny, standin):
    a, b = standin(), standin()
    with ServerEngine([a.url, b.url], ServerParams()) as pair:
        busy, idle = pair._replicas
        with pair._least_busy() as first:  # a held (in-flight) request on one replica ...
            with pair._least_busy() as second:  # ... sends the next one to the other
                assert {first.url, second.url} == {busy.url, idle.url}
            with pair._least_busy() as third:  # the other is free again: it takes the next one
                assert third is second
        picks = []
        for _ in range(4):  # nothing in flight: in turn
            with pair._least_busy() as r:
                picks.append(r.url)
        assert picks[0] != picks[1] and picks[:2] == picks[2:]


def test_every_replica_gets_the_key_and_never_a_redirect(tiny, standin, monkeypatch, caplog):
    monkeypatch.setenv(KEY_ENV, KEY)
    elsewhere = standin()
    a, b = standin(), standin(redirect_to=elsewhere.origin, redirect_methods=("GET",))
    with caplog.at_level(logging.DEBUG), pytest.raises(RdptError) as err:
        ServerEngine([a.url, b.url], ServerParams(api_key_env=KEY_ENV))
    assert f"server {b.url}/models: HTTP 302 redirect to {elsewhere.origin}, not followed" in str(err.value)
    assert a.seen == [("GET", "/v1/models", f"Bearer {KEY}")] and b.seen == [("GET", "/v1/models", f"Bearer {KEY}")]
    assert elsewhere.seen == []  # the key never reached the redirect's target
    assert KEY not in str(err.value) and all(KEY not in m for m in caplog.messages)


def test_replicas_of_different_models_are_refused():
    def serving(name: str):
        return httpx.MockTransport(lambda request: httpx.Response(200, json={"data": [{"id": name}]}))

    names = iter(["m1", "m2"])
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"data": [{"id": next(names)}]}))
    with pytest.raises(RdptError, match=r"the replicas serve different models \(\['m1', 'm2'\]\)"):
        ServerEngine(["http://127.0.0.1:1/v1", "http://127.0.0.1:2/v1"], ServerParams(), transport=transport)
    with ServerEngine(["http://127.0.0.1:1/v1", "http://127.0.0.1:2/v1"], ServerParams(),
                      transport=serving("m")) as same:
        assert same.model == "m" and same.context_length is None  # a replica without max_model_len: unknown
    with pytest.raises(RdptError, match="several distinct"):
        ServerEngine(["http://127.0.0.1:1/v1", "http://127.0.0.1:1/v1/"], ServerParams(), transport=serving("m"))


def test_params_take_a_list_of_urls_and_check_each(tmp_path):
    urls = ["http://127.0.0.1:8000/v1/", "http://127.0.0.1:8001/v1"]
    params = _params(tmp_path, "t", "s", models={"teacher": {"path": "t", "server": urls}, "student": {"path": "s"}})
    assert params.models.teacher.server == ["http://127.0.0.1:8000/v1", "http://127.0.0.1:8001/v1"]
    assert role_ref(params, "teacher", "t").server == ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8001/v1")
    single = _params(tmp_path, "t", "s", models={"teacher": {"path": "t", "server": urls[1:]},
                                                 "student": {"path": "s"}})
    assert single.models.teacher.server == urls[1]  # a one-URL list is that URL
    bad = {"[]": [], "twice": [urls[1], urls[1]], "credentials": [urls[1], "http://u:hunter2@127.0.0.1:9/v1"]}
    for why, value in bad.items():
        with pytest.raises(RdptError) as err:
            _params(tmp_path, "t", "s", models={"teacher": {"path": "t", "server": value}, "student": {"path": "s"}})
        line = str(err.value)
        assert "models.teacher" in line and "hunter2" not in line, why
        assert {"[]": "empty list", "twice": "listed twice", "credentials": "credentials in the URL"}[why] in line

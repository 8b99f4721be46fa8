"""Engines: one registry from params to a running :class:`~rdpt.engines.base.Engine`.

``open_engine(ref, kind, params, tokenizer)`` is the only place that decides how a model runs: a reference
with a ``server`` URL goes to that server, anything else to ``kind`` (``hf`` | ``vllm``). Callers then use the
engine API only (sample, token_logprobs, describe, close)::

    python -c "from rdpt.engines import ENGINES; print(sorted(ENGINES))"
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from rdpt import RdptError
from rdpt.engines.base import Engine, OutOfMemory, prompt_seed

log = logging.getLogger(__name__)

__all__ = ["ENGINES", "Engine", "OutOfMemory", "open_engine", "engine_kind", "prompt_seed"]


def _open_hf(ref, params, tokenizer, seed, scoring) -> Engine:
    from rdpt.engines.hf import HfEngine
    from rdpt.models import load_model, resolve_device

    device, dtype = resolve_device(params.device, params.dtype)
    model = load_model(ref, device, dtype)
    budget = {} if scoring is None else {"chunk_size": scoring.chunk_size,
                                         "max_tokens_per_batch": scoring.max_tokens_per_batch}
    return HfEngine(model, pad_id=tokenizer.pad_token_id, **budget)


def _open_vllm(ref, params, tokenizer, seed, scoring) -> Engine:
    from rdpt.engines.vllm import VllmEngine
    from rdpt.models import resolve_device

    _, dtype = resolve_device(params.device, params.dtype)
    engine = VllmEngine(ref.path, params.vllm, dtype=str(dtype).removeprefix("torch."), seed=seed or 0,
                        revision=ref.revision, hf_overrides=getattr(ref, "config_overrides", None))
    if scoring is not None:
        engine.token_budget = scoring.max_tokens_per_batch
    return engine


def _open_server(ref, params, tokenizer, seed, scoring) -> Engine:
    from rdpt.engines.base import load_generation_config
    from rdpt.engines.server import ServerEngine

    if getattr(ref, "config_overrides", None):
        log.warning("%s: config_overrides cannot reach a running server: start vllm serve with --hf-overrides '%s'",
                    ref.path, __import__("json").dumps(ref.config_overrides))
    engine = ServerEngine(ref.server, params.server, model=ref.path,
                          generation_config=load_generation_config(ref.path, ref.revision))
    if scoring is not None:
        engine.token_budget = scoring.max_tokens_per_batch
    return engine


# name -> opener(ref, params, tokenizer, seed, scoring); the tokenizer always loads on rdpt's side (templates, offsets)
ENGINES: dict[str, Callable] = {"hf": _open_hf, "vllm": _open_vllm, "server": _open_server}


def engine_kind(ref, kind: str) -> str:
    """The engine a model runs on: ``server`` when its reference names one, else ``kind``."""
    return "server" if getattr(ref, "server", None) else kind


def open_engine(ref, kind: str, params, tokenizer, *, seed: int | None = None, scoring=None) -> Engine:
    """The model ``ref`` (a :class:`rdpt.models.ModelRef`) running on engine ``kind`` (or its server).

    ``seed``: the engine-wide seed where an engine has one (vLLM); sampling stages pass ``params.seed``.
    ``scoring``: the ``score`` params section (LM-head chunk, token budget) for a scoring stage. Each is read
    only by the stages that pass it, so a seed change never reruns scoring, nor a chunk change sampling.
    """
    name = engine_kind(ref, kind)
    if name not in ENGINES:
        raise RdptError(f"engine {kind!r}: unknown (one of {sorted(ENGINES)})")
    engine = ENGINES[name](ref, params, tokenizer, seed, scoring)
    log.info("%s on %s (%s, %s)", ref.path, name, engine.describe(), engine.dtype)
    return engine

"""The one engine API: every way rdpt runs a model (transformers in process, vLLM, a vLLM server) is an :class:`Engine`.

rdpt keeps tokenization, chat templates, stop tokens, decoding and the sentence <-> token mapping on its
own side (:mod:`rdpt.models`, :mod:`rdpt.generation.sample`, :mod:`rdpt.provenance.score`), so an engine sees
and returns token ids only. That is what makes engines interchangeable: the same prompt ids go in, a response
decodes to the same text, and a sentence gets the same tokens whichever engine ran the model.

Implementations, chosen by :func:`rdpt.engines.open_engine` from params: ``hf`` (:mod:`rdpt.engines.hf`),
``vllm`` (:mod:`rdpt.engines.vllm`, an offline ``vllm.LLM``) and ``server`` (:mod:`rdpt.engines.server`, a
running ``vllm serve``). Nothing outside this package checks which one it has::

    python -c "from rdpt.engines.base import prompt_seed; print(prompt_seed(0, 1), prompt_seed(0, 2))"
"""

from __future__ import annotations

import copy
import hashlib
from abc import ABC, abstractmethod

import numpy as np

# Replicate setups an engine may be asked for by the noise floor (rdpt/provenance/calibrate.py).
REPLICATES = ("batch", "precision")


class OutOfMemory(Exception):
    """Raised by :meth:`Engine.token_logprobs` when a batch did not fit; the planner shrinks and re-plans."""


def prompt_seed(seed: int, index: int) -> int:
    """The sampling seed of prompt ``index`` of a call seeded with ``seed``: a hash, so seeds are far apart.

    vLLM seeds sample k of a request with its seed + k, so consecutive per-prompt seeds would make sample
    1 of prompt i the same random stream as sample 0 of prompt i + 1. 56 bits keep it inside int64.
    """
    digest = hashlib.sha256(f"rdpt-sample/{seed}/{index}".encode()).digest()
    return int.from_bytes(digest[:7], "big")


class Engine(ABC):
    """A model spoken to in token ids: it samples continuations and scores given tokens."""

    name: str = "engine"
    generation_config = None  # transformers GenerationConfig of the model when known (extra EOS ids)
    context_length: int | None = None  # prompt + response tokens the engine accepts; None = unknown
    vocab_size: int | None = None  # None = unknown (the ids are then not range-checked)
    dtype: str = "unknown"  # weights dtype as the engine runs them, for cost records
    # Padded tokens per scoring batch: the input of the one batch planner (rdpt.provenance.score.plan_batches).
    token_budget: int = 16384

    @abstractmethod
    def sample(self, prompts: list[list[int]], *, seed: int, batch_index: int, prompt_indices: list[int],
               num_samples: int, temperature: float, top_p: float, max_new_tokens: int,
               stop_ids: list[int], top_k: int = 0, min_p: float = 0.0,
               return_logprobs: bool = False) -> list[list]:
        """Generated token ids per prompt, per sample; a stopped sample ends with its stop id.

        With ``return_logprobs``, each sample is ``(ids, logprobs, ranks)`` instead: the model's *raw* log-prob
        (before temperature, top-k/p, min-p) and rank (1 = its top choice, unclipped) of each sampled token,
        aligned with ids: what a separate :meth:`token_logprobs` pass over the same ids would return.

        ``prompt_indices`` are the prompts' positions in the whole call and ``batch_index`` this batch's
        position in the plan: an engine seeds from (``seed``, batch) or (``seed``, prompt), never from what
        ran before, so a resumed run draws the same samples. Plain samples: only temperature, top_p,
        ``top_k`` and ``min_p`` (0 = off) shape the distribution (no penalties, nothing from the model's config).
        """

    @abstractmethod
    def token_logprobs(self, sequences: list[list[int]], starts: list[int], *,
                       rank_clip: int | None = None) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """Per sequence, log-prob and rank (1 = the model's top choice) of tokens ``starts[i]:`` given the rest.

        Raw log-probs of the model (no temperature), float64 arrays of length ``len(sequences[i]) - starts[i]``;
        ranks are int64 arrays of the same length, or None when ``rank_clip`` is None and the engine would
        pay for them. One call is one scoring batch; raise :class:`OutOfMemory` when it does not fit.
        """

    def shrink(self, failed_tokens: int) -> bool:
        """After :class:`OutOfMemory` on a batch of ``failed_tokens`` padded tokens: lower the budget.

        Returns False when the engine cannot recover that way (the caller then fails with one line).
        """
        return False

    def variant(self, replicate: str) -> Engine | None:
        """The same model under another equally valid setup, for the noise floor; None if not possible here.

        ``batch``: one response per scoring batch (no padding, other reduction shapes); ``precision``: the other
        precision in common use. A variant shares this engine's model and processes (close the engine, never the
        variant) and may change them: use it last. The base engine offers ``batch`` only.
        """
        if replicate != "batch":
            return None
        alone = copy.copy(self)
        alone.token_budget = 1  # every sequence is its own batch (plan_batches never splits one)
        return alone

    def describe(self) -> str:
        """Where the model runs, for cost records (e.g. ``cpu``, ``vllm:cpu``, ``server:http://...``)."""
        return self.name

    def close(self) -> None:
        """Release the engine (processes, memory); idempotent."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def load_generation_config(path: str, revision: str | None = None):
    """The checkpoint's generation config (for extra EOS ids), or None when it has none."""
    from transformers import GenerationConfig

    try:
        return GenerationConfig.from_pretrained(path, revision=revision)
    except Exception:  # noqa: BLE001 - no generation_config.json: the tokenizer's EOS is the stop id
        return None

"""What an inference engine other than in-process transformers must do for rdpt: sample and score token ids.

rdpt keeps tokenization, chat templates, stop tokens, decoding and the sentence <-> token mapping on its
own side (:mod:`rdpt.models`, :mod:`rdpt.generate`, :mod:`rdpt.score`), so every engine sees and returns
token ids only. That is what makes the engines interchangeable: the same prompt ids go in, a response
decodes to the same text, and a sentence gets the same tokens whichever engine ran the model.

Engines: ``hf`` (transformers, in this process; no class here), ``vllm`` (:mod:`rdpt.vllm_engine`, an
offline ``vllm.LLM``) and ``server`` (:mod:`rdpt.server`, a running ``vllm serve``)::

    python -c "from rdpt.engines import prompt_seed; print(prompt_seed(0, 1), prompt_seed(0, 2))"
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod

import numpy as np


def prompt_seed(seed: int, index: int) -> int:
    """The sampling seed of prompt ``index`` of a call seeded with ``seed``: a hash, so seeds are far apart.

    vLLM seeds sample k of a request with its seed + k, so consecutive per-prompt seeds would make sample
    1 of prompt i the same random stream as sample 0 of prompt i + 1. 56 bits keep it inside int64.
    """
    digest = hashlib.sha256(f"rdpt-sample/{seed}/{index}".encode()).digest()
    return int.from_bytes(digest[:7], "big")


class ExternalEngine(ABC):
    """A model served by another runtime, spoken to in token ids."""

    name: str = "external"
    generation_config = None  # transformers GenerationConfig of the model when known (extra EOS ids)
    context_length: int | None = None  # prompt + response tokens the engine accepts; None = unknown
    vocab_size: int | None = None  # None = unknown (the ids are then not range-checked here)
    dtype: str = "unknown"  # weights dtype as the engine runs them, for cost records

    @abstractmethod
    def sample_batch(self, prompts: list[list[int]], seeds: list[int], *, num_samples: int, temperature: float,
                     top_p: float, max_new_tokens: int, stop_ids: list[int]) -> list[list[list[int]]]:
        """Generated token ids per prompt, per sample; a stopped sample ends with its stop id.

        Plain samples: only temperature and top_p shape the distribution (no top-k, no penalties).
        """

    @abstractmethod
    def prompt_logprobs(self, sequences: list[list[int]], starts: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per sequence, log-prob and rank (1 = the model's top choice) of tokens ``starts[i]:`` given the rest.

        Raw log-probs of the model (no temperature), float64 and int64 arrays of length
        ``len(sequences[i]) - starts[i]``.
        """

    def describe(self) -> str:
        """Where the model runs, for cost records (e.g. ``vllm:cpu``)."""
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

"""The ``vllm`` engine: an offline ``vllm.LLM`` samples responses and scores them through prompt log-probs.

Selected with ``generate.engine`` / ``teach.engine`` / ``select.candidates.engine: vllm`` (sampling) and
``score.engine: vllm`` (scoring); settings under ``vllm:`` in params.yaml. Needs the ``vllm`` extra
(docs/scaling-up.md). vLLM never tokenizes here (``skip_tokenizer_init``): rdpt sends the prompt ids
its own tokenizer made and decodes the returned ids itself, exactly as on the HF path::

    VLLM_ENABLE_V1_MULTIPROCESSING=0 python -c "from rdpt.engines.vllm import VllmEngine; from rdpt.params \\
        import VllmParams; e = VllmEngine('data/toy/models/teacher', VllmParams(gpu_memory_utilization=0.3), \\
        dtype='float32', seed=0); print(e.token_logprobs([[0, 3, 203, 59]], [1])); e.close()"

Scoring: one request per response with ``prompt_logprobs=0`` and one generated token (vLLM generates at
least one), so each response gets one prefill, like the HF scorer's one forward pass. vLLM returns, per
prompt position, the raw log-prob and the rank of the token actually there; the rank counts the
vocabulary entries with a strictly larger log-prob, plus one, as :mod:`rdpt.provenance.score` does.
"""

from __future__ import annotations

import gc
import logging

import numpy as np

from rdpt import RdptError
from rdpt.engines.base import Engine, load_generation_config, prompt_seed
from rdpt.params import VllmParams

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install -e '.[vllm]' (CPU-only machines: see README, 'Scaling up')"


def _import_vllm():
    try:
        import vllm
    except ImportError as err:
        raise RdptError(f"engine 'vllm': cannot import vllm ({err}); {INSTALL_HINT}") from None
    return vllm


def _on_cpu() -> bool:
    from vllm.platforms import current_platform

    return str(current_platform.device_type) == "cpu"


class VllmEngine(Engine):
    name = "vllm"

    def __init__(self, path: str, params: VllmParams, *, dtype: str, seed: int, revision: str | None = None,
                 hf_overrides: dict | None = None):
        vllm = _import_vllm()
        on_cpu = _on_cpu()
        kwargs = {
            "model": path,
            "revision": revision,
            "dtype": dtype,
            "seed": seed,
            "skip_tokenizer_init": True,  # rdpt tokenizes and decodes: ids in, ids out
            "gpu_memory_utilization": params.gpu_memory_utilization or (0.3 if on_cpu else 0.9),
            "tensor_parallel_size": params.tensor_parallel_size,
            "enforce_eager": params.enforce_eager,
        }
        if params.max_model_len is not None:
            kwargs["max_model_len"] = params.max_model_len
        if params.max_num_seqs is not None:
            kwargs["max_num_seqs"] = params.max_num_seqs
        if hf_overrides:  # models.<role>.config_overrides (RoPE scaling, max_position_embeddings)
            kwargs["hf_overrides"] = dict(hf_overrides)
        if on_cpu:
            # vLLM 0.32 on CPU: a seeded request whose prefill is split over engine steps fails ("CPU Generator
            # does not use offset", rewinding its generator); whole prefills avoid that. kwargs may override.
            kwargs["enable_chunked_prefill"] = False
        kwargs.update(params.kwargs)
        try:
            self.llm = vllm.LLM(**kwargs)
        except Exception as err:  # noqa: BLE001 - one actionable line; the traceback is in vLLM's log above
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise RdptError(f"engine 'vllm': cannot start on {path!r} ({first})") from None
        config = self.llm.llm_engine.model_config
        self.context_length = int(config.max_model_len)
        self.vocab_size = int(config.get_vocab_size())
        self.generation_config = load_generation_config(path, revision)
        self.dtype = str(config.dtype).removeprefix("torch.")
        from vllm.platforms import current_platform

        self._device = str(current_platform.device_type)
        self._closed = False

    def describe(self) -> str:
        return f"vllm:{self._device}"

    def _run(self, prompts: list[list[int]], sampling: list) -> list:
        from vllm.inputs import TokensPrompt

        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=list(p)) for p in prompts], sampling,
                                    use_tqdm=False)
        if len(outputs) != len(prompts):
            raise RdptError(f"engine 'vllm': {len(prompts)} requests gave {len(outputs)} outputs")
        return outputs

    def sample(self, prompts, *, seed, batch_index, prompt_indices, num_samples, temperature, top_p, max_new_tokens,
               stop_ids, top_k=0, min_p=0.0, return_logprobs=False):
        from vllm import SamplingParams

        # One seed per prompt, so a prompt's samples do not depend on the batch it ran in.
        seeds = [prompt_seed(seed, i) for i in prompt_indices]

        sampling = [
            SamplingParams(n=num_samples, temperature=temperature, top_p=top_p, top_k=top_k, min_p=min_p,
                           repetition_penalty=1.0, presence_penalty=0.0, frequency_penalty=0.0,
                           max_tokens=max_new_tokens, seed=s, stop_token_ids=list(stop_ids), detokenize=False,
                           # 0 = the sampled token's own entry only; raw (pre-temperature) log-probs by default
                           logprobs=0 if return_logprobs else None)
            for s in seeds
        ]
        results = []
        for request in self._run(prompts, sampling):
            # vLLM keeps the stop token that ended a sample in its token_ids (an EOS), as HF generate does.
            outputs = sorted(request.outputs, key=lambda c: c.index)
            results.append([_with_logprobs(c) if return_logprobs else list(c.token_ids) for c in outputs])
        return results

    def token_logprobs(self, sequences, starts, *, rank_clip=None):
        from vllm import SamplingParams

        sampling = SamplingParams(max_tokens=1, prompt_logprobs=0, detokenize=False, temperature=1.0)
        out = []
        for seq, start, request in zip(sequences, starts, self._run(sequences, sampling), strict=True):
            entries = request.prompt_logprobs
            if entries is None or len(entries) != len(seq):
                raise RdptError("engine 'vllm': no prompt log-probs returned (prompt_logprobs unsupported?)")
            lps = np.empty(len(seq) - start, dtype=np.float64)
            ranks = np.empty(len(seq) - start, dtype=np.int64)
            for j in range(start, len(seq)):
                entry = entries[j].get(seq[j]) if entries[j] is not None else None
                if entry is None:
                    raise RdptError(f"engine 'vllm': no log-prob for prompt token {j} (id {seq[j]})")
                lps[j - start], ranks[j - start] = entry.logprob, entry.rank
            out.append((lps, ranks))
        return out

    def close(self) -> None:
        if getattr(self, "_closed", True):
            return
        self._closed = True
        core = getattr(self.llm.llm_engine, "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()  # stops the engine-core process (multiprocessing mode) before interpreter exit
        del self.llm
        gc.collect()


def _with_logprobs(completion) -> tuple[list[int], list[float], list[int]]:
    """(ids, raw log-probs, ranks) of one vLLM completion sampled with ``logprobs=0``."""
    ids = list(completion.token_ids)
    steps = completion.logprobs
    if steps is None or len(steps) != len(ids):
        raise RdptError("engine 'vllm': no sample log-probs returned (SamplingParams.logprobs unsupported?)")
    entries = [step.get(t) for step, t in zip(steps, ids, strict=True)]
    if any(e is None for e in entries):
        raise RdptError("engine 'vllm': a sampled token has no log-prob entry")
    return ids, [float(e.logprob) for e in entries], [int(e.rank) for e in entries]

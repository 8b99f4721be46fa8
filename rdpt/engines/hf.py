"""The ``hf`` engine: a transformers ``AutoModelForCausalLM`` in this process samples and scores.

Scoring runs the base decoder once per batch and applies the LM head only at the positions that predict
the scored tokens, chunk by chunk, with an fp32 log-sum-exp: the full ``[L, V]`` log-softmax is never built,
so the extra memory is ``O(chunk_size x V)`` whatever the length of the response::

    python -c "import torch, transformers as t; from rdpt.engines.hf import HfEngine; \\
        m = t.LlamaForCausalLM(t.LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, \\
        num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2)).eval(); \\
        print(HfEngine(m).token_logprobs([[1, 2, 3, 4]], [2], rank_clip=10))"

Logits follow the model's own head: the output embedding (bias included) in the weights' dtype, then, in
fp32, the final transforms some architectures apply in ``forward`` — Gemma-2/3-style
``final_logit_softcapping`` (``tanh(z / c) * c``), Cohere's ``logit_scale`` (``z * s``) and Granite's
``logits_scaling`` (``z / s``). The tests check the result against ``model(...).logits`` per architecture; a
model with another custom head needs a line in :func:`_final_logit_transform`.

Sampling uses HF ``generate`` with prompts left-padded so that every row's next token sits in the last
column, and batch ``b`` seeded from ``(seed, b)`` inside a forked RNG::

    input_ids   [PAD PAD p1 p2 p3] -> new tokens n1 n2 ... EOS [PAD ...]
    attention   [0   0   1  1  1 ]
"""

from __future__ import annotations

import copy
import logging

import torch

from rdpt import RdptError
from rdpt.engines.base import Engine, OutOfMemory
from rdpt.models import context_length
from rdpt.placement import describe, input_device, module_device

log = logging.getLogger(__name__)


def batch_seed(seed: int, batch_index: int) -> int:
    """The torch seed of sampling batch ``batch_index`` of a call seeded with ``seed``."""
    return (seed * 1_000_003 + batch_index) % (2**63 - 1)


def left_pad(batch: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), both (B, T), padded on the left."""
    width = max(len(ids) for ids in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, ids in enumerate(batch):
        if ids:
            input_ids[i, width - len(ids):] = torch.tensor(ids)
            attention_mask[i, width - len(ids):] = 1
    return input_ids, attention_mask


def collate(sequences: list[list[int]], pad_id: int, device) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and explicit ``position_ids``, each (B, L).

    With right padding and a causal mask a real token never sees a pad, and explicit positions keep
    every row at 0, 1, 2, ... whatever the model infers from the mask.
    """
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        input_ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        attention_mask[row, : len(seq)] = 1
    position_ids = torch.arange(width, dtype=torch.long).expand(len(sequences), width).contiguous()
    return {
        "input_ids": input_ids.to(device),
        "attention_mask": attention_mask.to(device),
        "position_ids": position_ids.to(device),
    }


def _decoder(model):
    """The module that maps ids to final (normed) hidden states, without the LM head."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    if decoder is None or decoder is model:
        decoder = getattr(model, getattr(model, "base_model_prefix", ""), None)
    if decoder is None or decoder is model:
        raise RdptError(f"{type(model).__name__}: cannot find the base decoder to score with")
    return decoder


def _final_logit_transform(config):
    """The element-wise transform the architecture applies to the head's output in ``forward``."""
    softcap = getattr(config, "final_logit_softcapping", None)
    scale = getattr(config, "logit_scale", None)  # Cohere: logits * logit_scale
    divisor = getattr(config, "logits_scaling", None)  # Granite: logits / logits_scaling

    def transform(logits: torch.Tensor) -> torch.Tensor:
        if isinstance(scale, (int, float)) and not isinstance(scale, bool):
            logits = logits * scale
        if isinstance(divisor, (int, float)) and not isinstance(divisor, bool):
            logits = logits / divisor
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        return logits

    return transform


class HfEngine(Engine):
    """A loaded transformers causal LM (eval mode, on its device) behind the engine API."""

    name = "hf"

    def __init__(self, model, *, chunk_size: int = 1024, max_tokens_per_batch: int = 16384,
                 pad_id: int | None = None):
        if chunk_size < 1 or max_tokens_per_batch < 1:
            raise RdptError("score: chunk_size and max_tokens_per_batch must be >= 1")
        self.model = model
        self.chunk_size = chunk_size
        self.token_budget = max_tokens_per_batch
        # The tokenizer's pad id (None: 0 when scoring, the first stop id when sampling). Pads are masked
        # (scoring pads on the right, sampling on the left), so the value never reaches a real token.
        self.pad_id = pad_id
        self.generation_config = getattr(model, "generation_config", None)
        self.context_length = context_length(model)
        self.vocab_size = model.get_input_embeddings().num_embeddings

    @property
    def dtype(self) -> str:  # follows the model: a precision variant casts it
        return str(self.model.dtype).removeprefix("torch.")

    @property
    def device(self) -> torch.device:  # where input ids go: the embedding's device (not model.device)
        return input_device(self.model)

    def describe(self) -> str:
        return describe(self.model)

    # ------------------------------------------------------------------------------------------ scoring
    def token_logprobs(self, sequences, starts, *, rank_clip=None):
        """fp32 log-probs (and with ``rank_clip``, clipped ranks) of ``seq[start:]`` for each sequence."""
        try:
            with torch.inference_mode():
                logprobs, ranks = self._forward(sequences, starts, rank_clip)
        except torch.cuda.OutOfMemoryError:
            logprobs = None  # raised below, once the failed frame's tensors are released
        if logprobs is None:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            raise OutOfMemory(f"{len(sequences)} sequences")
        logprobs = logprobs.double().cpu().numpy()
        ranks = None if ranks is None else ranks.cpu().numpy()
        out, offset = [], 0
        for seq, start in zip(sequences, starts, strict=True):
            n = len(seq) - start
            out.append((logprobs[offset: offset + n], None if ranks is None else ranks[offset: offset + n]))
            offset += n
        return out

    def _forward(self, sequences: list[list[int]], starts: list[int], rank_clip: int | None):
        """(log-probs (N,) fp32, ranks (N,) int64 or None) of all scored tokens, concatenated in batch order."""
        model = self.model
        # The last token is a target only, never an input.
        inputs = collate([seq[:-1] for seq in sequences], 0 if self.pad_id is None else self.pad_id, self.device)
        out = _decoder(model)(**inputs, use_cache=False)
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]  # (B, L, H)

        # Token j of row b (j >= start_b) is predicted by the state at j - 1.
        rows = torch.cat([torch.full((len(s) - k,), b, dtype=torch.long)
                          for b, (s, k) in enumerate(zip(sequences, starts))])
        cols = torch.cat([torch.arange(len(s) - k) + k - 1 for s, k in zip(sequences, starts)])
        states = hidden[rows.to(hidden.device), cols.to(hidden.device)]  # (N, H), N = total scored tokens
        del hidden, out

        head = model.get_output_embeddings()
        head_device = module_device(head)  # differs from the decoder's under a multi-device device_map
        states = states.to(head_device)
        targets = torch.cat([torch.tensor(s[k:], dtype=torch.long) for s, k in zip(sequences, starts)]).to(head_device)
        transform = _final_logit_transform(model.config)
        logprobs = torch.empty(len(targets), dtype=torch.float32, device=head_device)
        ranks = None if rank_clip is None else torch.empty(len(targets), dtype=torch.long, device=head_device)
        for start in range(0, len(targets), self.chunk_size):
            stop = min(start + self.chunk_size, len(targets))
            logits = transform(head(states[start:stop]).float())  # (chunk, V) fp32: the only O(V) buffer
            target_logits = logits.gather(1, targets[start:stop, None]).squeeze(1)
            if ranks is not None:
                # A compare + count over the same (chunk, V) logits: ~1/H of the head's cost. Before the
                # in-place softmax below, which overwrites them.
                ranks[start:stop] = ((logits > target_logits[:, None]).sum(dim=-1) + 1).clamp_(max=rank_clip)
            # log-sum-exp in place: torch.logsumexp allocates (chunk, V) temporaries and is ~3x slower on CPU,
            # which cost 16% of a bare forward's throughput with Qwen's 151,936-row head.
            peak = logits.amax(dim=-1, keepdim=True)  # (chunk, 1)
            norm = logits.sub_(peak).exp_().sum(dim=-1).log_()  # (chunk,)
            logprobs[start:stop] = target_logits - peak.squeeze(1) - norm
            del logits  # freed before the next chunk's head output is allocated: one (chunk, V) buffer at a time
        return logprobs, ranks

    def shrink(self, failed_tokens: int) -> bool:
        self.token_budget = max(1, failed_tokens // 2)
        log.warning("out of memory on %d padded tokens: scoring budget now %d tokens", failed_tokens,
                    self.token_budget)
        return True

    def variant(self, replicate: str) -> Engine | None:
        if replicate == "batch":  # alone and unpadded, half the LM-head chunk: other reduction shapes
            alone = copy.copy(self)
            alone.token_budget, alone.chunk_size = 1, max(1, self.chunk_size // 2)
            return alone
        if replicate == "precision":  # cast in place (no second copy of the weights): use it last
            other = "bfloat16" if self.dtype == "float32" else "float32"
            cast = copy.copy(self)
            cast.model = self.model.to(getattr(torch, other))
            cast.token_budget, cast.chunk_size = 1, max(1, self.chunk_size // 2)
            return cast
        return None

    # ----------------------------------------------------------------------------------------- sampling
    def sample(self, prompts, *, seed, batch_index, prompt_indices, num_samples, temperature, top_p,
               max_new_tokens, stop_ids, top_k=0, min_p=0.0, return_logprobs=False):
        """:meth:`Engine.sample`; with ``return_logprobs``, each sample is ``(ids, logprobs, ranks)``: the model's
        *raw* log-prob and rank of each sampled token (``output_logits``: before temperature, top-k/p and min-p,
        so the score a separate teacher pass would give, not the warped sampling distribution), aligned with ids."""
        from transformers import GenerationConfig

        pad_id = self.pad_id if self.pad_id is not None else stop_ids[0]
        greedy = temperature == 0  # argmax: no warpers at all (transformers warns about unused ones)
        gen_config = GenerationConfig(
            do_sample=not greedy,
            temperature=None if greedy else temperature,
            top_p=None if greedy else top_p,
            top_k=None if greedy else top_k,  # 0 = off; otherwise the global default of 50 would apply
            min_p=None if greedy else (min_p or None),  # None = no min-p warper (0 would add a no-op one)
            repetition_penalty=1.0,
            no_repeat_ngram_size=0,
            min_length=0,
            max_new_tokens=max_new_tokens,
            num_return_sequences=num_samples,
            pad_token_id=pad_id,
            eos_token_id=list(stop_ids),
            use_cache=True,
            return_dict_in_generate=return_logprobs,
            output_logits=return_logprobs,  # unprocessed logits (output_scores would be the warped ones)
        )
        device = self.device
        input_ids, attention_mask = left_pad(prompts, pad_id)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(batch_seed(seed, batch_index))
            with torch.inference_mode():
                out = self.model.generate(
                    input_ids=input_ids.to(device),
                    attention_mask=attention_mask.to(device),
                    generation_config=gen_config,
                )  # (len(prompts) * num_samples, T + new)
                sequences = out.sequences if return_logprobs else out
                new_ids = sequences[:, input_ids.shape[1]:]
                if return_logprobs:  # step j's logits (B*n, V) -> log-prob and rank of the token drawn at step j
                    lps, ranks = [], []
                    for j, step in enumerate(out.logits):
                        step = step.float()
                        drawn = step.gather(1, new_ids[:, j: j + 1].to(step.device))  # (B*n, 1)
                        ranks.append(((step > drawn).sum(dim=-1) + 1).cpu())
                        lps.append((drawn[:, 0] - torch.logsumexp(step, dim=-1)).cpu())
                    lps, ranks = torch.stack(lps, 1), torch.stack(ranks, 1)  # (B*n, new) each
        new = new_ids.tolist()
        if return_logprobs:
            new = list(zip(new, lps.double().tolist(), ranks.tolist(), strict=True))
        # Rows are padded past their stop token; the caller cuts each at its first stop id.
        return [new[row * num_samples: (row + 1) * num_samples] for row in range(len(prompts))]

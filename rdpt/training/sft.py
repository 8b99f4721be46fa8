"""Supervised fine-tuning (SFT) with transformers' ``Trainer``: loss on response tokens only.

Used by ``distill`` (student on teacher responses), by the selection runs, and by the toy world to
train its tiny models from scratch. The caller loads the model and calls :func:`sft`; with ``save_dir``
it also saves the trained model and tokenizer there (through the Trainer, so FSDP gathers full weights)::

    stats = sft(model, tokenizer, [{"prompt": rendered_prompt, "response": text}, ...],
                TrainParams(), output_dir="/tmp/run", seed=0, save_dir="/tmp/model")

One example becomes one row; prompt and response are tokenized separately (no BPE merge across
the boundary) and only the response tokens, EOS included, carry labels::

    input_ids  [BOS p1 p2 p3 | r1 r2 r3 EOS] [PAD PAD]
    labels     [-100 ...-100 | r1 r2 r3 EOS] [-100 -100]     (the model shifts labels by one)
    attention  [1    ...   1 | 1  1  1  1  ] [0   0  ]

Runs on CPU (float32) and on CUDA (bf16 when the weights are bf16); it leaves device placement and
process groups to the Trainer, so ``accelerate launch`` works unchanged (rdpt/launch.py): each process
takes ``batch_size`` rows per step, and the loss is weighted by tokens across processes, so N processes
with batch B follow the curve of one process with batch N x B.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from rdpt import RdptError
from rdpt.models import context_length, encode_prompt_response
from rdpt.params import TrainParams

log = logging.getLogger(__name__)

IGNORE_INDEX = -100  # label value the loss skips (prompt tokens and padding)


@dataclass
class TokenizedExamples:
    rows: list[dict[str, list[int]]]  # {"input_ids", "labels"} per kept example
    n_dropped: int  # examples longer than the length limit
    tokens: int  # tokens of the kept examples (prompt + response + EOS), one pass


def tokenize_examples(tokenizer, examples: list[dict], max_length: int | None) -> TokenizedExamples:
    """Token ids and labels (-100 on prompt tokens) of each example; too-long ones are dropped."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise RdptError("sft: the tokenizer has no EOS token; responses could never end")
    rows, n_dropped, tokens = [], 0, 0
    for ex in examples:
        enc = encode_prompt_response(tokenizer, ex["prompt"], ex["response"])
        response_ids = enc.response_ids + [eos]
        input_ids = enc.prompt_ids + response_ids
        if max_length is not None and len(input_ids) > max_length:
            n_dropped += 1
            continue
        labels = [IGNORE_INDEX] * len(enc.prompt_ids) + response_ids
        rows.append({"input_ids": input_ids, "labels": labels})
        tokens += len(input_ids)
    return TokenizedExamples(rows, n_dropped, tokens)


class _ListDataset(torch.utils.data.Dataset):
    def __init__(self, rows: list[dict]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]


class RightPadCollator:
    """Right-pads a batch: input_ids with the pad id, labels with -100, attention mask 0 on padding."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(r["input_ids"]) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)  # (B, T)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)  # (B, T)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)  # (B, T)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            input_ids[i, :n] = torch.tensor(r["input_ids"])
            labels[i, :n] = torch.tensor(r["labels"])
            attention_mask[i, :n] = 1
        return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


def _length_limit(model, params: TrainParams) -> int | None:
    limits = [x for x in (params.max_length, context_length(model)) if x is not None]
    return min(limits) if limits else None


def _precision(model) -> dict[str, bool]:
    dtype = next(model.parameters()).dtype
    if dtype == torch.float16:
        raise RdptError("sft: float16 weights cannot be trained stably here; use dtype bfloat16 or float32")
    on_cuda = next(model.parameters()).device.type == "cuda"
    # `accelerate launch --mixed_precision M` reaches TrainingArguments as ACCELERATE_MIXED_PRECISION, and
    # bf16=True would override it: an explicit launcher choice wins. Otherwise bf16 weights on CUDA autocast
    # in bf16 too; float32 weights stay float32.
    launcher = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    return {"bf16": dtype == torch.bfloat16 and on_cuda and launcher == "no", "fp16": False}


def sft(model, tokenizer, examples: list[dict], params: TrainParams, *, output_dir: str, seed: int,
        save_dir: str | None = None) -> dict:
    """Fine-tune ``model`` in place on ``examples`` ({"prompt": rendered prompt, "response": text}).

    Returns ``{"train_loss_curve": [[step, loss], ...], "steps", "wall_s", "n_examples",
    "n_dropped", "tokens", "train_loss"}``; ``n_examples`` counts the examples trained on, ``tokens``
    their tokens (prompt + response + EOS) in one pass. ``output_dir`` is the Trainer's scratch folder
    (no checkpoint is written there). With ``save_dir``, the main process saves the trained model and the
    tokenizer there (``save_pretrained`` files); every process must call this (FSDP gathers the weights).
    """
    from transformers import Trainer, TrainingArguments

    data = tokenize_examples(tokenizer, examples, _length_limit(model, params))
    if data.n_dropped:
        log.warning("sft: dropped %d of %d examples longer than %s tokens", data.n_dropped, len(examples),
                    _length_limit(model, params))
    if not data.rows:
        raise RdptError(f"sft: no example to train on ({len(examples)} given, {data.n_dropped} too long)")

    world = int(os.environ.get("WORLD_SIZE", "1"))  # processes under accelerate launch / torchrun
    per_step = params.batch_size * params.grad_accum * world
    if params.max_steps > 0:
        planned_steps = params.max_steps
    else:
        planned_steps = math.ceil(params.epochs * math.ceil(len(data.rows) / per_step))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    args = TrainingArguments(
        output_dir=output_dir,
        num_train_epochs=params.epochs,
        max_steps=params.max_steps,
        learning_rate=params.learning_rate,
        per_device_train_batch_size=params.batch_size,
        gradient_accumulation_steps=params.grad_accum,
        warmup_steps=float(params.warmup_ratio),  # a float in [0, 1) is a ratio of total steps
        weight_decay=params.weight_decay,
        lr_scheduler_type=params.lr_scheduler,
        seed=seed,
        data_seed=seed,
        report_to=[],
        save_strategy="no",
        logging_strategy="steps",
        logging_steps=max(1, planned_steps // 50),  # ~50 points on the loss curve
        logging_first_step=True,
        disable_tqdm=False,
        remove_unused_columns=False,  # rows are plain dicts, not a datasets.Dataset
        dataloader_pin_memory=False,
        use_cpu=next(model.parameters()).device.type == "cpu",  # several CPU processes: gloo
        average_tokens_across_devices=True,  # the loss is token-weighted over all processes' batches
        **_precision(model),
    )
    trainer = Trainer(
        model=model,
        args=args,
        data_collator=RightPadCollator(pad_id),
        train_dataset=_ListDataset(data.rows),
    )
    start = time.perf_counter()
    result = trainer.train()
    wall_s = time.perf_counter() - start
    curve = [[int(h["step"]), float(h["loss"])] for h in trainer.state.log_history if "loss" in h]
    if save_dir is not None:
        _save(trainer, tokenizer, save_dir)
    model.eval()  # callers sample next
    return {
        "train_loss_curve": curve,
        "steps": int(result.global_step),
        "wall_s": round(wall_s, 3),
        "n_examples": len(data.rows),
        "n_dropped": data.n_dropped,
        "tokens": data.tokens,
        "train_loss": float(result.training_loss),
    }


def _save(trainer, tokenizer, save_dir: str) -> None:
    """The trained model + tokenizer as ``save_pretrained`` files, written by the main process only."""
    if trainer.is_fsdp_enabled:
        # A sharded-state-dict FSDP config still ends in one loadable checkpoint: gather the full weights.
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    trainer.save_model(save_dir)  # every process joins (FSDP / DeepSpeed gather); the main one writes
    if trainer.args.should_save:
        tokenizer.save_pretrained(save_dir)
        (Path(save_dir) / "training_args.bin").unlink(missing_ok=True)  # a pickle of the Trainer's args
    trainer.accelerator.wait_for_everyone()

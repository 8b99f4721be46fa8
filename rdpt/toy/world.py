"""Build the toy world: data files, two tokenizers, a teacher and a student trained from scratch.

    toy_world(ToyParams(), "toy", "cpu")   # ~3.8 min on 2 CPU cores with the defaults

writes::

    toy/data/train.jsonl                 {"id", "question", "answer"}  questions for `teach`
    toy/data/toy_easy.jsonl, toy_hard.jsonl                              the two test benchmarks
    toy/models/teacher/, toy/models/student/   save_pretrained: weights, tokenizer, chat template

and returns a report: sizes, parameter counts, training time and final loss per model, and the
sampled accuracy (temperature 1) of each model on each benchmark, measured on the SAVED models as
every later stage loads them (``rdpt.models.load_model`` / ``load_tokenizer``).

A model of the world is a :class:`ToyRole`: a reasoning style, a tokenizer spec (template,
special tokens), an architecture, and its ``<role>_*`` fields in ToyParams. Adding a third model
(e.g. an unrelated teacher for teacher identification) = a Style, a TokenizerSpec, a ROLES entry
and ``<name>_*`` fields in ToyParams.

Defaults, measured on 2 busy CPU cores: teacher (Llama, 4 x 128, 0.86M params, 1400 steps of 16
on 20000 solutions) ~185 s, sampled accuracy 0.80 easy / 0.70 hard; student (Qwen3, 3 x 128,
0.66M params, 200 worked solutions + 3000 one-step ones, 400 steps) ~28 s, 0.09 / 0.03.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import jinja2
import torch

from rdpt.engines.hf import HfEngine
from rdpt.generation.sample import sample
from rdpt.models import load_model, load_tokenizer, render_prompt
from rdpt.params import ToyParams, TrainParams
from rdpt.toy.styles import STYLES, Style
from rdpt.toy.task import Problem, is_correct, make_toy_data
from rdpt.toy.tokenizer import STUDENT_TOKENIZER, TEACHER_TOKENIZER, TokenizerSpec, train_tokenizer
from rdpt.training.sft import sft

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ToyRole:
    name: str  # also the prefix of its ToyParams fields and its folder under models/
    style: Style
    tokenizer: TokenizerSpec
    arch: str  # "llama" | "qwen3"


ROLES = {
    "teacher": ToyRole("teacher", STYLES["teacher"], TEACHER_TOKENIZER, "llama"),
    # Not qwen2: transformers 5 loads any qwen2 checkpoint's tokenizer as Qwen2Tokenizer (its own
    # pre-tokenizer and an extra <|endoftext|>), which would not be the tokenizer trained here.
    "student": ToyRole("student", STYLES["student"], STUDENT_TOKENIZER, "qwen3"),
}


def _field(params: ToyParams, role: str, field: str):
    return getattr(params, f"{role}_{field}")


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def _rows(prefix: str, problems: list[Problem]) -> list[dict]:
    return [{"id": f"{prefix}-{i:05d}", "question": p.question(), "answer": str(p.answer)}
            for i, p in enumerate(problems)]


def tokenizer_texts(spec: TokenizerSpec, pairs: list[tuple[str, str]]) -> list[str]:
    """The corpus as the model will see it (template included), special tokens left out."""
    template = jinja2.Template(spec.chat_template)
    texts = []
    for question, solution in pairs:
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": solution}]
        texts.append(template.render(messages=messages, bos_token="", eos_token="", add_generation_prompt=False))
    specials = [t for t in (spec.bos, spec.eos, spec.pad, *spec.extra_special) if t]
    for token in specials:
        texts = [t.replace(token, "") for t in texts]
    return texts


def build_model(arch: str, tokenizer, *, layers: int, hidden: int, heads: int, context: int, seed: int):
    """A freshly initialised tiny causal LM (float32) sized to the tokenizer."""
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    config_kwargs = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=8 * ((8 * hidden // 3 + 7) // 8),  # SwiGLU's usual 8/3 x hidden, multiple of 8
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        head_dim=hidden // heads,
        max_position_embeddings=context,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    if arch == "llama":
        model = LlamaForCausalLM(LlamaConfig(**config_kwargs))
    elif arch == "qwen3":
        model = Qwen3ForCausalLM(Qwen3Config(**config_kwargs))
    else:
        raise ValueError(f"unknown toy architecture {arch!r}")
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return model


def train_role(role: ToyRole, params: ToyParams, problems: list[Problem], out: Path, device) -> dict:
    """Train the role's tokenizer and model on its own corpus and save both to ``out``."""
    t0 = time.perf_counter()
    rng = random.Random(f"{params.seed}-solutions-{role.name}")
    pairs = [(p.question(), role.style.solve(p, rng)) for p in problems]
    tokenizer = train_tokenizer(tokenizer_texts(role.tokenizer, pairs), _field(params, role.name, "vocab"),
                                role.tokenizer, params.context)
    model = build_model(role.arch, tokenizer, layers=_field(params, role.name, "layers"),
                        hidden=_field(params, role.name, "hidden"), heads=_field(params, role.name, "heads"),
                        context=params.context, seed=params.seed).to(device)
    examples = [{"prompt": render_prompt(tokenizer, q), "response": s} for q, s in pairs]
    train_params = TrainParams(
        max_steps=_field(params, role.name, "steps"),
        learning_rate=params.learning_rate,
        batch_size=params.batch_size,
        warmup_ratio=params.warmup_ratio,
        weight_decay=0.0,
        lr_scheduler="cosine",
    )
    with tempfile.TemporaryDirectory(prefix=f"rdpt-toy-{role.name}-") as tmp:
        stats = sft(model, tokenizer, examples, train_params, output_dir=tmp, seed=params.seed)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    curve = stats["train_loss_curve"]
    return {
        "arch": role.arch,
        "params": model.num_parameters(),
        "vocab": len(tokenizer),
        "corpus": len(pairs),
        "steps": stats["steps"],
        "train_wall_s": stats["wall_s"],
        "first_loss": curve[0][1] if curve else None,
        "final_loss": curve[-1][1] if curve else None,
        "tokens": stats["tokens"],
        "n_dropped": stats["n_dropped"],
        "wall_s": round(time.perf_counter() - t0, 2),
    }


def sampled_accuracy(model_dir: Path, benchmarks: dict[str, list[Problem]], params: ToyParams, device) -> dict:
    """Per benchmark: accuracy and share of stopped responses, one sample per question at
    temperature 1, from the saved model as later stages load it."""
    dev = torch.device(device)
    tok = load_tokenizer(str(model_dir))
    engine = HfEngine(load_model(str(model_dir), dev, torch.float32), pad_id=tok.pad_token_id)
    report = {}
    for name, problems in benchmarks.items():
        prompts = [render_prompt(tok, p.question()) for p in problems]
        outs = sample(engine, tok, prompts, num_samples=1, temperature=1.0, top_p=1.0,
                      max_new_tokens=params.eval_max_new_tokens, batch_size=64, seed=params.seed,
                      desc=f"{model_dir.name} {name}")
        correct = sum(is_correct(o[0]["text"], p.answer) for o, p in zip(outs, problems))
        stopped = sum(o[0]["finish_reason"] == "stop" for o in outs)
        report[name] = {"accuracy": round(correct / len(problems), 4), "stopped": round(stopped / len(problems), 4)}
    return report


def toy_world(params: ToyParams, out_dir: str | Path, device="cpu") -> dict:
    """Write the toy data and models under ``out_dir``; return the build report (see module doc).

    Everything is built in a sibling temporary folder renamed into place at the end, so an
    interrupted build never leaves a half-trained world behind.
    """
    t0 = time.perf_counter()
    final = Path(out_dir)
    out = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(out, ignore_errors=True)
    data = make_toy_data(params.seed, params.n_train_questions, params.n_test_questions,
                         {role: _field(params, role, "corpus") for role in ROLES},
                         {role: _field(params, role, "one_step") for role in ROLES})
    _write_jsonl(out / "data" / "train.jsonl", _rows("train", data.train_pool))
    for name, problems in data.benchmarks.items():
        _write_jsonl(out / "data" / f"{name}.jsonl", _rows(name, problems))
    report: dict = {
        "data": {"train": len(data.train_pool), **{n: len(p) for n, p in data.benchmarks.items()},
                 "train_combos": len(data.train_combos), "test_combos": len(data.test_combos)},
        "models": {},
    }
    for name, role in ROLES.items():
        log.info("toy: training the %s", name)
        problems = data.corpora[name] + data.one_step.get(name, [])
        report["models"][name] = train_role(role, params, problems, out / "models" / name, device)
    t_eval = time.perf_counter()
    for name in ROLES:
        acc = sampled_accuracy(out / "models" / name, data.benchmarks, params, device)
        report["models"][name]["accuracy"] = {b: a["accuracy"] for b, a in acc.items()}
        report["models"][name]["stopped"] = {b: a["stopped"] for b, a in acc.items()}
    report["eval_wall_s"] = round(time.perf_counter() - t_eval, 2)
    report["wall_s"] = round(time.perf_counter() - t0, 2)
    shutil.rmtree(final, ignore_errors=True)
    out.rename(final)
    return report

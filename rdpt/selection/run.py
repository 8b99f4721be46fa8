"""The select_run stage: the original student fine-tuned on one selection (``distill``'s trainer with the
``select.train`` budget), then evaluated on every benchmark with ``generate``'s sampling settings under
``select.eval``'s overrides, graded by math-verify; without ``--selection``, the untrained student::

    python stages/select_run.py --student data/toy/models/student \\
        --selection data/select/selections/random/seed0.jsonl --seed 0 --out data/select/runs/random/seed0
    python stages/select_run.py --student data/toy/models/student --seed 0 --out data/select/untrained
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from rdpt.engines import open_engine
from rdpt.generation.grade import grade, row_gold
from rdpt.generation.responses import benchmark_sampling, fitting_questions, sample_responses
from rdpt.io.artifacts import atomic_dir, read_table, split_timing, write_json, write_jsonl, write_timing
from rdpt.io.data import load_questions
from rdpt.models import ModelRef, load_tokenizer
from rdpt.params import Params
from rdpt.training.launch import fine_tune


def select_run(params: Params, student: ModelRef, selection_path: str | None, seed: int, out_dir: str,
               timing_out: str | None = None) -> dict:
    """Fine-tune ``student`` on one selection, then sample and grade every benchmark: ``<out>/eval.jsonl`` +
    ``train_report.json`` (+ ``model/`` with ``select.keep_models``). Without ``selection_path`` the student is
    evaluated as it is (Table 1's untrained row, under the same ``select.eval`` sampling)."""
    rows = read_table(selection_path, "generations") if selection_path else None
    run_name = f"{Path(out_dir).parent.name}/seed{seed}" if rows is not None else "untrained student"
    with atomic_dir(out_dir) as tmp:
        if rows is None:
            stats, evaluated, label = {}, student, student.path
        else:
            # Trained (in this process or under accelerate launch) and saved: every engine samples from the folder.
            stats = fine_tune(params, student, rows, seed=seed, out_dir=tmp / "model", section="select.train")
            # the student's template and prompt settings; its config overrides are saved in the model's config
            evaluated = ModelRef(str(tmp / "model"), chat_template=student.chat_template,
                                 system_prompt=student.system_prompt,
                                 chat_template_kwargs=student.chat_template_kwargs, think=student.think)
            label = str(Path(out_dir) / "model")
        evals = evaluate(params, evaluated, seed, run_name, label)
        accuracy = pd.DataFrame(evals).groupby("benchmark")["correct"].mean()
        report, timing = split_timing({"selection": selection_path, "seed": seed, "base": student.path, **stats,
                                       "accuracy": {b: float(a) for b, a in accuracy.items()}})
        write_jsonl(tmp / "eval.jsonl", evals)
        write_json(tmp / "train_report.json", report)
        if rows is not None and not params.select.keep_models:
            shutil.rmtree(tmp / "model")
    write_timing(timing_out, timing)
    return {**report, **timing}


def evaluate(params: Params, model: ModelRef, seed: int, run_name: str, label: str) -> list[dict]:
    """Every benchmark sampled with `generate`'s settings under ``select.eval``'s overrides, and graded."""
    tokenizer = load_tokenizer(model, padding_side="left")
    engine = open_engine(model, params.generate.engine, params, tokenizer, seed=seed)
    evals: list[dict] = []
    try:
        specs = params.data.benchmarks
        sets = {name: load_questions(spec) for name, spec in specs.items()}
        sets, _ = fitting_questions(engine, tokenizer, sets, {n: s.path for n, s in specs.items()}, params.generate,
                                    model, {n: s.system_prompt for n, s in specs.items()})
        for i, (name, questions) in enumerate(sets.items()):
            # the same seeds as `generate` for seed 0; each seed samples afresh
            sampling = params.select.eval.apply(benchmark_sampling(params.generate, specs[name]))
            evals += sample_responses(engine, tokenizer, questions, name, sampling, seed + 1000 * i,
                                      f"evaluate {run_name} {name}", model=label,
                                      system_prompt=specs[name].system_prompt)
    finally:
        engine.close()
    for r in evals:
        r["correct"] = bool(grade(row_gold(r["answer"], r.get("answer_parts")), r["text"]))
    return evals

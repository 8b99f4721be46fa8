"""The select_run stage: the original student fine-tuned on one selection (``distill``'s trainer with the
``select.train`` budget), then evaluated on every benchmark with ``generate``'s sampling settings and math-verify::

    python stages/select_run.py --student data/toy/models/student \\
        --selection data/select/selections/random/seed0.jsonl --seed 0 --out data/select/runs/random/seed0
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


def select_run(params: Params, student: ModelRef, selection_path: str, seed: int, out_dir: str,
               timing_out: str | None = None) -> dict:
    """Fine-tune ``student`` on one selection, then sample and grade every benchmark: ``<out>/eval.jsonl`` +
    ``train_report.json`` (+ ``model/`` with ``select.keep_models``)."""
    rows = read_table(selection_path, "generations")
    run_name = f"{Path(out_dir).parent.name}/seed{seed}"
    with atomic_dir(out_dir) as tmp:
        # Trained (in this process or under accelerate launch) and saved: every engine samples from the folder.
        stats = fine_tune(params, student, rows, seed=seed, out_dir=tmp / "model", section="select.train")
        # the student's template and prompt settings; its config overrides are saved in the model's config
        trained = ModelRef(str(tmp / "model"), chat_template=student.chat_template,
                           system_prompt=student.system_prompt, chat_template_kwargs=student.chat_template_kwargs,
                           think=student.think)
        tokenizer = load_tokenizer(trained, padding_side="left")
        engine = open_engine(trained, params.generate.engine, params, tokenizer, seed=seed)
        evals: list[dict] = []
        try:
            sets = {name: load_questions(spec) for name, spec in params.data.benchmarks.items()}
            sources = {name: spec.path for name, spec in params.data.benchmarks.items()}
            system_prompts = {name: spec.system_prompt for name, spec in params.data.benchmarks.items()}
            sets, _ = fitting_questions(engine, tokenizer, sets, sources, params.generate, trained, system_prompts)
            for i, (name, questions) in enumerate(sets.items()):
                # the same seeds as `generate` for seed 0; each seed samples afresh
                sampling = benchmark_sampling(params.generate, params.data.benchmarks[name])
                evals += sample_responses(engine, tokenizer, questions, name, sampling,
                                          seed + 1000 * i, f"evaluate {run_name} {name}",
                                          model=str(Path(out_dir) / "model"),
                                          system_prompt=system_prompts[name])
        finally:
            engine.close()
        for r in evals:
            r["correct"] = bool(grade(row_gold(r["answer"], r.get("answer_parts")), r["text"]))
        accuracy = pd.DataFrame(evals).groupby("benchmark")["correct"].mean()
        report, timing = split_timing({"selection": selection_path, "seed": seed, "base": student.path, **stats,
                                       "accuracy": {b: float(a) for b, a in accuracy.items()}})
        write_jsonl(tmp / "eval.jsonl", evals)
        write_json(tmp / "train_report.json", report)
        if not params.select.keep_models:
            shutil.rmtree(tmp / "model")
    write_timing(timing_out, timing)
    return {**report, **timing}

"""The distill stage: the student fine-tuned on the teacher's responses (or an existing distilled checkpoint)::

    python stages/distill.py --student data/toy/models/student --data data/teach.jsonl --out data/distilled
"""

from __future__ import annotations

import shutil
from pathlib import Path

from rdpt.io.artifacts import read_table, split_timing, write_json, write_timing
from rdpt.models import ModelRef, write_ref
from rdpt.params import Params
from rdpt.training.launch import fine_tune


def distill(params: Params, student: ModelRef, teach_path: str, out_dir: str, timing_out: str | None = None) -> dict:
    """Fine-tune ``student`` on the teacher's responses into ``out_dir``, or record the checkpoint params name.

    With ``models.distilled.path`` set nothing is trained: ``out_dir`` holds a model-reference file naming
    that checkpoint, so downstream stages keep one input path whether the model was trained here or not.
    """
    out = Path(out_dir)
    tmp = out.with_name(f".{out.name}.tmp")
    for folder in (out, tmp):
        if folder.exists():
            shutil.rmtree(folder)
    spec = params.models.distilled
    if spec.path is not None:
        write_ref(tmp, ModelRef(spec.path, spec.revision, spec.chat_template, getattr(spec, "gguf_file", None)))
        tmp.rename(out)
        return {"trained": False, "model": spec.path, "revision": spec.revision}
    rows = read_table(teach_path, "generations")
    # In this process, or under `accelerate launch` when params.launch asks for it (rdpt/training/launch.py).
    stats = fine_tune(params, student, rows, seed=params.seed, out_dir=tmp)
    report, timing = split_timing({"trained": True, "base": student.path, **stats})
    write_json(tmp / "train_report.json", report)  # no wall-clock field: a rerun writes the same bytes
    tmp.rename(out)
    write_timing(timing_out, timing)
    return {**report, **timing}

"""The classify stage: every traced sentence gets its class under the rule of :mod:`rdpt.provenance.rules`, at
thresholds from params or calibrated from the noise floor (:mod:`rdpt.provenance.calibrate`), with the beta sweep::

    python stages/classify.py --sentences data/sentences.parquet --teacher data/scores/teacher \\
        --student data/scores/student --distilled data/scores/distilled --noise data/noise \\
        --out data/classified.parquet --calibration data/calibration.json
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from rdpt import RdptError
from rdpt.io.artifacts import read_table, write_json, write_table
from rdpt.params import Params
from rdpt.provenance import ROLES
from rdpt.provenance.calibrate import noise_floor, resolve_thresholds
from rdpt.provenance.rules import CLASSES, UNSCORED, classify_frame, join_scores, label


def beta_sweep(classified: pd.DataFrame, alpha: float, grid) -> pd.DataFrame:
    """Class shares of each benchmark's scored sentences at every beta of ``grid`` (alpha fixed).

    Columns: benchmark, beta, n_sentences, one per class, teacher_plus_boosted. The Shared share does not
    move (it depends on alpha only); Teacher and Student shrink and Boosted grows as beta rises.
    """
    scored = classified[classified["cls"] != UNSCORED]
    rows = []
    for bench in sorted(scored["benchmark"].unique()):
        s = scored[scored["benchmark"] == bench]
        p = [s[f"p_{r}"].to_numpy(dtype=float) for r in ROLES]
        for beta in grid:
            labels = label(*p, alpha, float(beta))
            share = {c: float(np.mean(labels == c)) for c in CLASSES}
            rows.append({"benchmark": bench, "beta": float(beta), "n_sentences": len(s), **share,
                         "teacher_plus_boosted": share["Teacher"] + share["Boosted"]})
    return pd.DataFrame(rows, columns=["benchmark", "beta", "n_sentences", *CLASSES, "teacher_plus_boosted"])


def classify(params: Params, sentences_path: str, score_dirs: dict[str, str], out: str,
             noise_dir: str | None = None, calibration_out: str | None = None) -> pd.DataFrame:
    """The classify stage: every sentence's class; with ``calibration_out``, the thresholds used and the beta sweep.

    ``score_dirs`` maps each role to its scores folder; ``noise_dir`` holds ``<role>.parquet`` from the `noise`
    stages (needed by ``classify.alpha: auto``)::

        python stages/classify.py --sentences data/sentences.parquet --teacher data/scores/teacher \
            --student data/scores/student --distilled data/scores/distilled --noise data/noise \
            --out data/classified.parquet --calibration data/calibration.json
    """
    df = read_table(sentences_path, "sentences")
    df = join_scores(df, sentences_path, {role: score_dirs[role] for role in ROLES}, params.classify.aggregate,
                     "classify.aggregate")
    thresholds = _thresholds(params, df, noise_dir)
    classified = classify_frame(df, thresholds["alpha_used"], thresholds["beta_used"], params.classify.aggregate)
    write_table(out, classified, "classified")
    if calibration_out is not None:
        sweep = beta_sweep(classified, thresholds["alpha_used"], params.classify.beta_grid)
        write_json(calibration_out, {**thresholds, "beta_sweep": sweep.to_dict(orient="records")})
    return classified


def _thresholds(params: Params, scores: pd.DataFrame, noise_dir: str | None) -> dict:
    """alpha/beta (numbers from params, or calibrated: :mod:`rdpt.provenance.calibrate`) and how they were chosen."""
    tables = {}
    if noise_dir is not None:
        for role in ROLES:
            path = Path(noise_dir) / f"{role}.parquet"
            tables[role] = read_table(path, "noise")
            unknown = ~tables[role]["response_id"].isin(scores["response_id"]).to_numpy()
            if unknown.any():
                raise RdptError(f"{path}: row {int(unknown.argmax())}: response_id "
                                f"{tables[role]['response_id'].iloc[int(unknown.argmax())]!r} is not a scored "
                                "response (stale file? dvc repro)")
    cfg = params.classify
    return resolve_thresholds(cfg.alpha, cfg.beta, noise_floor(scores, tables), cfg.noise_quantile)

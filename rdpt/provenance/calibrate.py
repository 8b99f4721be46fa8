"""Calibrate the classification thresholds: alpha from the scorer's noise floor, and a sweep of beta.

**Noise floor.** A sentence's p_M is a measurement. Re-running the scorer on the same text under an equally
valid setup moves it a little: another batch composition (padding and matrix shapes change the floating-point
reduction order) or the other precision in common use (bf16 weights on a GPU, fp32 on a CPU). The `noise`
stage re-scores a few traced responses (``classify.noise_responses``, picked evenly over the sorted response
ids) with every model under each replicate setup of ``classify.noise_replicates``:

* ``batch``: one response per batch (no padding) and half the LM-head chunk, same dtype;
* ``precision``: the same plan in the other precision (bfloat16 when the run is float32, float32 when it is
  bfloat16 or float16).

For each sentence and replicate, delta_M = p_M(replicate) - p_M(scores used by classify). A *difference* of two
models moves by delta_X - delta_Y, so the sentence's noise is ``max over replicates and pairs |delta_X - delta_Y|``
(the quantity the Shared rule compares with alpha), and the noise floor is its distribution over sentences.

**Rule.** ``classify.alpha: auto`` = the ``classify.noise_quantile`` (0.95) quantile of that noise, rounded *up*
to two significant digits (the value printed in metrics is the value used): a sentence whose three models
truly agree is Shared with at least that probability. ``classify.beta: auto`` = the alpha used: one tolerance
for "two models agree", so a Boosted sentence is exactly one whose teacher and student agree by the same
criterion that makes a sentence Shared (the paper's alpha = beta = 0.1 is this rule with a fixed alpha). The
beta sweep (:func:`beta_sweep`) shows how much every class share depends on that choice::

    python -c "from rdpt.provenance.calibrate import ceil_significant; print(ceil_significant(0.023412))"
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd

from rdpt import RdptError
from rdpt.engines import open_engine
from rdpt.engines.base import REPLICATES
from rdpt.io.artifacts import read_table, write_table
from rdpt.models import ModelRef, load_tokenizer
from rdpt.params import Params
from rdpt.provenance import ROLES
from rdpt.provenance.score import score_items
from rdpt.provenance.traced import read_traced, traced_items

log = logging.getLogger(__name__)

AUTO = "auto"
PAIRS = (("teacher", "student"), ("teacher", "distilled"), ("student", "distilled"))
NOISE_COLUMNS = ["response_id", "sentence_idx", "replicate", "dtype", "n_tokens", "mean_logprob"]


def ceil_significant(x: float, digits: int = 2) -> float:
    """``x`` rounded up to ``digits`` significant digits (0.023412 -> 0.024; 0 stays 0)."""
    if not x > 0:
        return 0.0
    exponent = math.floor(math.log10(x)) - (digits - 1)
    # The tiny shrink keeps a value that is already on the grid (up to float error) where it is.
    steps = math.ceil(x / 10.0**exponent * (1 - 1e-12))
    return round(steps * 10.0**exponent, -exponent)


def pick_responses(response_ids, n: int) -> list[str]:
    """``n`` response ids spread evenly over the sorted distinct ids (all of them when there are fewer).

    No seed: the same sentences table always gives the same pick, and every benchmark (ids start with the
    benchmark name) is represented in proportion to its size.
    """
    ids = sorted(set(map(str, response_ids)))
    if n <= 0 or not ids:
        return []
    if n >= len(ids):
        return ids
    return [ids[i] for i in np.unique(np.linspace(0, len(ids) - 1, n).round().astype(int))]


def replicate_dtype(main: str) -> str:
    """The precision a ``precision`` replicate uses: the other one in common use."""
    return "bfloat16" if main == "float32" else "float32"


def rescore_replicates(engine, tokenizer, items: list, sentence_idx: list[list[int]], replicates) -> pd.DataFrame:
    """Score ``items`` (:class:`rdpt.provenance.score.ScoreItem`) once per replicate setup; rows of the noise table.

    ``sentence_idx[i]`` names the sentences of ``items[i]`` in span order. Each setup is the engine's own
    :meth:`~rdpt.engines.base.Engine.variant` (``precision`` last: it may cast the engine's model); a setup the
    engine cannot offer (e.g. another precision on a server) is left out and logged.
    """
    rows = []
    for kind in [r for r in REPLICATES if r in set(replicates)]:
        replica = engine.variant(kind)
        if replica is None:
            log.warning("noise: engine %s has no %r replicate; the noise floor leaves it out", engine.describe(), kind)
            continue
        results, stats = score_items(replica, tokenizer, items, progress=False, desc=f"noise {kind}")
        for item, idxs, sentence_scores in zip(items, sentence_idx, results, strict=True):
            for k, (total, n) in zip(idxs, sentence_scores, strict=True):
                rows.append({"response_id": item.key, "sentence_idx": int(k), "replicate": kind,
                             "dtype": stats.dtype, "n_tokens": int(n),
                             "mean_logprob": total / n if n else float("nan")})
    return pd.DataFrame(rows, columns=NOISE_COLUMNS)


def noise(params: Params, ref: ModelRef, name: str, generations_path: str, sentences_path: str, out: str) -> dict:
    """Re-score a few traced responses under other setups of the configured engine: the scorer's noise floor.

    ``classify.noise_responses`` responses, picked evenly over the sorted ids, once per setup of
    ``classify.noise_replicates``; 0 writes an empty table and opens no engine. The engine is the one
    ``score`` uses (``score.engine``, or the model's server), so the floor measures that scorer.
    """
    cfg = params.classify
    sents = read_table(sentences_path, "sentences")
    picked = pick_responses(sents["response_id"], cfg.noise_responses)
    if not picked:
        write_table(out, pd.DataFrame({c: pd.Series(dtype=object) for c in NOISE_COLUMNS}), "noise")
        return {"n_responses": 0}
    gens, sents = read_traced(generations_path, sentences_path)
    tokenizer = load_tokenizer(ref)
    items, index = traced_items(tokenizer, gens, sents[sents["response_id"].isin(picked)], model=ref.path)
    engine = open_engine(ref, params.score.engine, params, tokenizer, scoring=params.score)
    try:
        table = rescore_replicates(engine, tokenizer, items, index, cfg.noise_replicates)
    finally:
        engine.close()
    write_table(out, table, "noise")
    return {"n_responses": len(items), "n_rows": len(table)}


def noise_floor(main: pd.DataFrame, noise: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per re-scored sentence and replicate: delta_<role> and the pairwise noise (max |delta_X - delta_Y|).

    ``main`` holds the scores classify uses (``mean_logprob_<role>``, ``n_tokens_<role>``); ``noise`` maps each
    role to its noise table. Only sentences that have a token under every model in both runs count.
    Columns: response_id, sentence_idx, replicate, delta_<role> x3, teacher_student (|delta_T - delta_S|),
    pairwise.
    """
    columns = ["response_id", "sentence_idx", "replicate", *(f"delta_{r}" for r in ROLES), "teacher_student",
               "pairwise"]
    if any(noise.get(role) is None or noise[role].empty for role in ROLES):
        return pd.DataFrame(columns=columns)
    keys = ["response_id", "sentence_idx"]
    out = None
    for role in ROLES:
        rep = noise[role][[*keys, "replicate", "n_tokens", "mean_logprob"]].merge(
            main[[*keys, f"n_tokens_{role}", f"mean_logprob_{role}"]], on=keys, how="inner")
        ok = (rep["n_tokens"] > 0) & (rep[f"n_tokens_{role}"] > 0)
        rep = rep[ok]
        rep = rep.assign(**{f"delta_{role}": np.exp(rep["mean_logprob"]) - np.exp(rep[f"mean_logprob_{role}"])})
        rep = rep[[*keys, "replicate", f"delta_{role}"]]
        out = rep if out is None else out.merge(rep, on=[*keys, "replicate"], how="inner")
    d = {r: out[f"delta_{r}"].to_numpy(dtype=float) for r in ROLES}
    out["teacher_student"] = np.abs(d["teacher"] - d["student"])
    out["pairwise"] = np.max([np.abs(d[x] - d[y]) for x, y in PAIRS], axis=0) if len(out) else []
    return out[columns].sort_values([*keys, "replicate"]).reset_index(drop=True)


def _quantile(values: np.ndarray, q: float) -> float | None:
    # "higher": an observed value, never an interpolation below the q-th sentence's noise
    return float(np.quantile(values, q, method="higher")) if len(values) else None


def _sig(x: float | None) -> float | None:
    """4 significant digits for metrics (a noise floor of 1.2e-7 must not round to 0 at 4 decimals)."""
    return None if x is None else float(f"{x:.4g}")


def sentence_noise(floor: pd.DataFrame) -> np.ndarray:
    """Each re-scored sentence's noise: its largest pairwise move over the replicate setups.

    The maximum, not a pool of (sentence, setup) rows: a setup that moves nothing (fp32 batch plans) must not
    dilute one that does (bf16), since a real run can be subject to either.
    """
    return floor.groupby(["response_id", "sentence_idx"])["pairwise"].max().to_numpy(dtype=float)


def noise_summary(floor: pd.DataFrame, quantile: float) -> dict:
    """Stable-keyed summary of :func:`noise_floor` for metrics (None where nothing was re-scored)."""
    pairwise = sentence_noise(floor)
    return {
        "n_responses": int(floor["response_id"].nunique()),
        "n_sentences": int(floor[["response_id", "sentence_idx"]].drop_duplicates().shape[0]),
        "median": _sig(_quantile(pairwise, 0.5)),
        "quantile": _sig(_quantile(pairwise, quantile)),
        "max": _sig(float(pairwise.max())) if len(pairwise) else None,
        "by_replicate": {kind: _sig(_quantile(floor.loc[floor["replicate"] == kind, "pairwise"].to_numpy(float),
                                              quantile)) for kind in REPLICATES},
    }


def resolve_thresholds(alpha, beta, floor: pd.DataFrame, quantile: float) -> dict:
    """The alpha and beta classify uses, and how they were chosen (keys as in reports/metrics.json ``classify``).

    ``alpha``/``beta`` are the params values: a number, used as is, or ``"auto"`` (see the module docstring).
    """
    summary = noise_summary(floor, quantile)
    if alpha == AUTO:
        q = _quantile(sentence_noise(floor), quantile)
        if q is None:
            raise RdptError("classify.alpha: 'auto' needs the noise floor, but no sentence was re-scored "
                            "(set classify.noise_responses > 0 and run the noise stages: dvc repro)")
        alpha_used, alpha_source = ceil_significant(q), "noise_floor"
    else:
        alpha_used, alpha_source = float(alpha), "param"
    beta_used, beta_source = (alpha_used, "alpha") if beta == AUTO else (float(beta), "param")
    return {"alpha_used": alpha_used, "alpha_source": alpha_source, "beta_used": beta_used,
            "beta_source": beta_source, "noise_quantile": quantile, "noise_floor": summary}

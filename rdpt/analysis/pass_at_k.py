"""The evaluation protocol: pass@1 as avg@k, the unbiased pass@k estimator, and the truncation rate, per model and
benchmark (the correlate stage's ``evaluation`` block, the selection report's Table 1)::

    python -c "from rdpt.analysis.pass_at_k import pass_at_k; print(pass_at_k(n=16, c=3, k=4))"

With n samples of a question, c of them correct:

* **avg@k** (reported as pass@1) is c / n averaged over questions: the expected accuracy of one sample, with the
  spread of a single sample averaged out over n. Equal to the plain accuracy when every question has n samples.
* **pass@k** is the unbiased estimator of Chen et al. 2021 (arXiv 2107.03374), 1 - C(n-c, k) / C(n, k): the
  chance that k of the n samples, drawn without replacement, hold at least one correct answer; averaged over
  questions. Reported for k = 1, 2, 4, ... up to n, and n itself (k > n has no unbiased estimate).
* the **truncation rate** is the share of responses cut at the token limit (finish_reason ``length``): such a
  response never reached its answer and is graded wrong, so a high rate means max_new_tokens, not the model,
  decided part of the accuracy.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def pass_at_k(n: int, c: int, k: int) -> float:
    """1 - C(n-c, k) / C(n, k), exact in integers (no float overflow for n in the thousands)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n (n={n}, c={c}, k={k})")
    if n - c < k:  # every draw of k holds a correct sample
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def report_ks(n: int) -> list[int]:
    """The k reported for n samples per question: the powers of two below n, and n."""
    ks = [1 << i for i in range(n.bit_length()) if 1 << i < n]
    return ks + [n]


def summary(responses: pd.DataFrame) -> dict:
    """avg@k, pass@k and the truncation rate of one model on one benchmark.

    ``responses``: one row per response with question_id, correct (bool) and finish_reason. When questions hold
    different numbers of samples (an interrupted run), pass@k is reported up to the smallest n.
    """
    per_q = responses.groupby("question_id", sort=False)["correct"].agg(["size", "sum"])
    n, c = per_q["size"].to_numpy(int), per_q["sum"].to_numpy(int)
    n_min = int(n.min())
    truncated = int((responses["finish_reason"] == "length").sum())
    return {
        "n_questions": len(per_q),
        "samples_per_question": n_min if n_min == int(n.max()) else [n_min, int(n.max())],
        "avg_at_k": round(float(np.mean(c / n)), 4),
        "pass_at_k": {str(k): round(float(np.mean([pass_at_k(int(a), int(b), k) for a, b in zip(n, c)])), 4)
                      for k in report_ks(n_min)},
        "n_truncated": truncated,
        "truncation_rate": round(truncated / len(responses), 4),
    }


def evaluation(graded: pd.DataFrame) -> dict[str, dict[str, dict]]:
    """benchmark -> model -> :func:`summary`, benchmarks and models sorted by name."""
    out: dict[str, dict[str, dict]] = {}
    for (bench, model), g in graded.groupby(["benchmark", "model"]):
        out.setdefault(str(bench), {})[str(model)] = summary(g)
    return out

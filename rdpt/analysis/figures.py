"""Figures: the action split of one response, the position-wise class curves of a benchmark, and how many
responses reach each sentence index (where those curves stop).

Figures are drawn on a bare ``matplotlib.figure.Figure`` (Agg, no pyplot state) at a fixed DPI and
saved without the "Software" PNG tag, so rerunning a stage on the same data rewrites the same bytes::

    python -c "import pandas as pd; from rdpt.analysis.figures import plot_action_split; \\
      s = pd.DataFrame({'sentence_idx': [0, 1, 2], 'cls': ['Teacher', 'Shared', 'Boosted'], \\
        'p_teacher': [.9, .5, .3], 'p_student': [.2, .5, .3], 'p_distilled': [.8, .5, .7]}); \\
      plot_action_split(s, '/tmp/split.png', 'example')"
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from rdpt import RdptError
from rdpt.provenance.rules import CLASSES, UNSCORED

DPI = 120
# One colour per class in every figure (colour-blind-safe seaborn palette), grey for unscored sentences.
CLASS_COLORS = dict(zip(CLASSES, sns.color_palette("colorblind", 4).as_hex())) | {UNSCORED: "#bbbbbb"}
BAND_ALPHA = 0.35  # class bands over white; the HTML viewer tints sentences with the same blend
MODEL_LINES = {  # column -> (label, colour): dark lines that stay readable over the class bands
    "p_teacher": ("teacher", "#1b1b1b"),
    "p_student": ("student", "#7a7a7a"),
    "p_distilled": ("distilled", "#b2182b"),
}
_PNG_METADATA = {"Software": None}  # matplotlib writes its version here; nothing else varies between runs


def save_figure(fig: Figure, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, metadata=_PNG_METADATA if path.suffix.lower() == ".png" else None)


def plot_action_split(one_response_sentences: pd.DataFrame, path: str | Path, title: str) -> None:
    """pT, pS, pD of each sentence of one response (lines) over bands coloured by the sentence's class."""
    df = one_response_sentences.sort_values("sentence_idx")
    if df.empty:
        raise RdptError(f"action split {title!r}: the response has no sentence to plot")
    with sns.axes_style("ticks"):
        fig = Figure(figsize=(10, 3.6))
        ax = fig.add_subplot()
    x = df["sentence_idx"].to_numpy()
    for k, cls in zip(x, df["cls"]):
        ax.axvspan(k - 0.5, k + 0.5, color=CLASS_COLORS[cls], alpha=BAND_ALPHA, linewidth=0)
    marker = "o" if len(df) <= 60 else None  # markers clutter long responses
    for column, (label, colour) in MODEL_LINES.items():
        ax.plot(x, df[column].to_numpy(), label=label, color=colour, marker=marker, markersize=3, linewidth=1.2)
    ax.set(
        xlim=(x.min() - 0.5, x.max() + 0.5),
        ylim=(0, 1.02),
        xlabel="sentence index k",
        ylabel="p = exp(mean log-prob)",
        title=title,
    )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    present = [c for c in (*CLASSES, UNSCORED) if c in set(df["cls"])]
    handles = [Line2D([], [], color=c, marker=marker, markersize=3, label=label) for label, c in MODEL_LINES.values()]
    handles += [Patch(color=CLASS_COLORS[c], alpha=BAND_ALPHA, label=c) for c in present]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False, fontsize="small")
    fig.tight_layout()
    save_figure(fig, path)


def plot_position_curves(curves: pd.DataFrame, area: pd.DataFrame, path: str | Path, benchmark: str) -> None:
    """One panel per class: frequency of the class at sentence k, correct (solid) vs incorrect (dashed).

    ``curves`` and ``area`` come from :func:`rdpt.analysis.shares.position_curves` and
    :func:`rdpt.analysis.shares.area_between`; panel titles give the signed and absolute area.
    """
    bench_curves = curves[curves["benchmark"] == benchmark]
    bench_area = area[area["benchmark"] == benchmark].set_index("cls")
    with sns.axes_style("whitegrid"):
        fig = Figure(figsize=(13, 3.4))
        axes = fig.subplots(1, len(CLASSES), sharex=True, sharey=True)
    for ax, cls in zip(axes, CLASSES):
        c = bench_curves[bench_curves["cls"] == cls]
        for correct, style in ((True, "-"), (False, "--")):
            g = c[c["correct"] == correct].sort_values("sentence_idx")
            ax.plot(
                g["sentence_idx"].to_numpy(),
                g["frequency"].to_numpy(),
                linestyle=style,
                color=CLASS_COLORS[cls],
                linewidth=1.3,
                label="correct" if correct else "incorrect",
            )
        if cls in bench_area.index:
            a = bench_area.loc[cls]
            ax.set_title(f"{cls}\narea {a['signed']:+.3f}  |area| {a['abs']:.3f}", fontsize="medium")
        else:
            ax.set_title(f"{cls}\n(no index with enough responses)", fontsize="medium")
        ax.set_xlabel("sentence index k")
    axes[0].xaxis.set_major_locator(MaxNLocator(integer=True))  # shared by all panels
    axes[0].set(ylabel="fraction of k-th sentences", ylim=(0, 1))
    axes[0].legend(loc="upper right", fontsize="small")
    fig.suptitle(benchmark)
    fig.tight_layout()
    save_figure(fig, path)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) index of each run of True in ``mask``: one shaded span per run, not one per index."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(int), [0]])))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2])]


def plot_index_counts(counts: pd.DataFrame, min_responses: int, path: str | Path,
                      benchmarks: list[str] | None = None) -> None:
    """Correct and incorrect responses reaching sentence index k, one panel per benchmark, with the
    ``min_responses`` line; indices the position curves leave out are shaded. From
    :func:`rdpt.analysis.shares.index_counts`. ``benchmarks`` gives the panels (default: those in ``counts``), so
    a benchmark without a scored sentence still gets an empty, labelled panel."""
    benches = sorted(counts["benchmark"].unique()) if benchmarks is None else list(benchmarks)
    if not benches:
        raise RdptError("index counts: no benchmark to plot")
    with sns.axes_style("whitegrid"):
        fig = Figure(figsize=(4.2 * len(benches) + 2.4, 3.4))
        axes = np.atleast_1d(fig.subplots(1, len(benches), sharey=True))
    lines = {True: ("correct", "#1b1b1b", "-", "o"), False: ("incorrect", "#7a7a7a", "--", "s")}
    for ax, bench in zip(axes, benches):
        b = counts[counts["benchmark"] == bench]
        usable = b[b["correct"]].sort_values("sentence_idx")
        ks = usable["sentence_idx"].to_numpy()
        for first, last in _runs(~usable["usable"].to_numpy(dtype=bool)):
            ax.axvspan(ks[first] - 0.5, ks[last] + 0.5, color="#dddddd", linewidth=0, zorder=0)
        marker_ok = len(ks) <= 60  # markers clutter thousands of indices
        for correct, (label, colour, style, marker) in lines.items():
            g = b[b["correct"] == correct].sort_values("sentence_idx")
            ax.plot(g["sentence_idx"].to_numpy(), g["n_responses"].to_numpy(), color=colour, linestyle=style,
                    marker=marker if marker_ok else None, markersize=3.5, linewidth=1.3, label=label)
        ax.axhline(min_responses, color="#b2182b", linestyle=":", linewidth=1.4)
        kept = ks[usable["usable"].to_numpy(dtype=bool)]
        if len(ks) == 0:
            title = f"{bench}\nno scored sentence"
            ax.set_xticks([])
        elif len(kept) == 0:
            title = f"{bench}\nno index with {min_responses} responses per group"
        elif len(kept) == kept[-1] - kept[0] + 1:
            title = f"{bench}\ncurves use k = {kept[0]}–{kept[-1]} ({len(kept)} indices)"
        else:
            title = f"{bench}\ncurves use {len(kept)} indices, last k = {kept[-1]}"
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel("sentence index k")
        if len(ks):
            ax.set_xlim(ks[0] - 0.5, ks[-1] + 0.5)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    # Counts fall from hundreds to a handful: a log scale keeps the threshold region readable; symlog
    # (linear below 1) keeps a group that has run out (0) on the plot.
    axes[0].set_yscale("symlog", linthresh=1, linscale=0.4)
    axes[0].set_ylim(bottom=0)
    axes[0].yaxis.set_major_formatter(lambda v, _: f"{v:g}")
    axes[0].set_ylabel("responses reaching index k")
    handles = [Line2D([], [], color=c, linestyle=s, marker=m, markersize=3.5, label=label)
               for label, c, s, m in lines.values()]
    handles += [Line2D([], [], color="#b2182b", linestyle=":", linewidth=1.4, label=f"min_responses = {min_responses}"),
                Patch(color="#dddddd", label="k left out of the curves")]
    axes[-1].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False, fontsize="small")
    fig.tight_layout()
    save_figure(fig, path)


def pick_example(sentences: pd.DataFrame, responses: pd.DataFrame) -> object:
    """response_id of a correct response showing many classes, for the action-split figure.

    Deterministic: the most distinct (scored) classes; among those, the length closest to their median
    (a typical response, neither a 4-sentence curiosity nor an unreadable 800-sentence one); then the
    smallest id as text. Falls back to incorrect responses when no correct one has a scored sentence.
    """
    scored = sentences[sentences["cls"] != UNSCORED]
    n_classes = scored.groupby("response_id")["cls"].nunique().rename("n_classes")
    length = sentences.groupby("response_id").size().rename("length")
    stats = pd.concat([n_classes, length], axis=1, join="inner").reset_index()
    correct_ids = set(responses.loc[responses["correct"].astype(bool), "response_id"])
    pool = stats[stats["response_id"].isin(correct_ids)]
    if pool.empty:
        pool = stats
    if pool.empty:
        raise RdptError("no response has a scored sentence: nothing to show in the action-split figure")
    pool = pool[pool["n_classes"] == pool["n_classes"].max()]
    median = float(np.median(pool["length"]))
    pool = pool.assign(_off=(pool["length"] - median).abs(), _id=pool["response_id"].astype(str))
    return pool.sort_values(["_off", "_id"]).iloc[0]["response_id"]


def plot_beta_sensitivity(sweep: pd.DataFrame, alpha: float, beta_used: float, path: str | Path) -> None:
    """Class shares against beta (one panel per benchmark), the beta used marked; from
    :func:`rdpt.provenance.calibrate.beta_sweep`. A flat line is a share that does not depend on the choice of beta."""
    benches = sorted(sweep["benchmark"].unique())
    if not benches:
        raise RdptError("beta sensitivity: no scored sentence to sweep")
    with sns.axes_style("whitegrid"):
        fig = Figure(figsize=(4.2 * len(benches) + 1.6, 3.4))
        axes = np.atleast_1d(fig.subplots(1, len(benches), sharey=True))
    for ax, bench in zip(axes, benches):
        b = sweep[sweep["benchmark"] == bench].sort_values("beta")
        for cls in CLASSES:
            ax.plot(b["beta"].to_numpy(), b[cls].to_numpy(), color=CLASS_COLORS[cls], marker="o", markersize=3,
                    linewidth=1.3, label=cls)
        ax.axvline(beta_used, color="#444444", linestyle="--", linewidth=1, label=f"beta used ({beta_used:g})")
        ax.set(title=f"{bench} ({int(b['n_sentences'].iloc[0])} sentences)", xlabel="beta", ylim=(0, 1))
    axes[0].set_ylabel(f"share of sentences (alpha = {alpha:g})")
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False, fontsize="small")
    fig.tight_layout()
    save_figure(fig, path)

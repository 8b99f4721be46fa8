"""The select_data stage: each selection arm (a strategy of :mod:`rdpt.selection.strategies`, at a beta) applied
to the scored candidates, once per seed::

    python stages/select_data.py --candidates data/select/candidates.jsonl \\
        --sentences data/select/sentences.parquet --teacher data/select/scores/teacher \\
        --student data/select/scores/student --out data/select/selections --chat-out data/select/chat
"""

from __future__ import annotations

import contextlib
import json

import pandas as pd

from rdpt.io.artifacts import SCHEMAS, atomic_dir, read_table, write_json, write_jsonl, write_table
from rdpt.params import Params
from rdpt.provenance.rules import join_scores
from rdpt.selection.arms import arm_seeds, parse_arm
from rdpt.selection.chat import write_chat
from rdpt.selection.strategies import FEATURES, STRATEGIES, candidate_features, select, selection_stats


def select_data(params: Params, candidates_path: str, sentences_path: str, score_dirs: dict[str, str],
                out_dir: str, chat_dir: str | None = None) -> dict:
    """Every arm applied to the scored candidates: ``<out>/<arm>/seed<k>.jsonl``, ``features.parquet``, summary.

    Each selection file holds the chosen candidates (`generations` rows + their features), one per question;
    deterministic strategies write the same file for every seed, so DVC reruns only runs whose data changed.
    With ``chat_dir``, each selection is also ``<chat_dir>/<arm>/seed<k>.jsonl`` in chat format
    (:mod:`rdpt.selection.chat`), for training it elsewhere (TRL, LLaMA-Factory).
    """
    cands = read_table(candidates_path, "generations")
    sents = read_table(sentences_path, "sentences")[["response_id", "sentence_idx"]]
    aggregate = params.select.aggregate
    sents = join_scores(sents, sentences_path, {role: score_dirs[role] for role in ("teacher", "student")},
                        params.select.aggregate, "select.aggregate")
    # A candidate without any sentence (blank text) can never be trained on: it leaves the pool.
    with_sentences = cands[cands["response_id"].isin(set(sents["response_id"]))]
    n_dropped = len(cands) - len(with_sentences)
    by_beta: dict[float, pd.DataFrame] = {}

    def features(beta: float) -> pd.DataFrame:
        if beta not in by_beta:
            by_beta[beta] = candidate_features(sents, with_sentences, beta, aggregate)
        return by_beta[beta]

    reference = features(params.select.beta)
    # the system prompt a candidate was sampled under travels with it: select_run trains with it, as distill does
    fields = list(SCHEMAS["generations"]) + [c for c in ("source", "system_prompt") if c in cands.columns]
    temperature = with_sentences.set_index("response_id")["temperature"] if "temperature" in cands.columns else None
    rows_of = with_sentences[fields].set_index("response_id", drop=False)
    summary: dict = {"beta": params.select.beta, "n_candidates": int(len(with_sentences)),
                     "n_dropped_no_sentence": int(n_dropped),
                     "n_questions": int(with_sentences["question_id"].nunique()), "arms": {}}
    summary["pool"] = pool_stats(reference, with_sentences)
    if aggregate != "mean":  # recorded when not the default (a default summary stays as it was)
        summary["aggregate"] = aggregate
    # every selection file appears together with the summary and its chat export, or none
    with atomic_dir(out_dir) as tmp, (atomic_dir(chat_dir) if chat_dir else contextlib.nullcontext()) as chat:
        for arm in params.select.arms:
            strategy, arm_beta = parse_arm(arm)
            beta = params.select.beta if arm_beta is None else arm_beta
            per_seed = []
            for seed in arm_seeds(params.select, arm):
                chosen = select(features(beta), strategy, seed)
                ids = chosen["response_id"]
                rows = rows_of.loc[ids].reset_index(drop=True)
                # Selection-time features travel with each row (at the arm's beta), for inspection.
                extra = chosen[list(FEATURES)].reset_index(drop=True)
                # to_json: native types, and an infinite RSR (NLL 0) becomes null rather than non-standard JSON
                records = json.loads(pd.concat([rows, extra], axis=1).to_json(orient="records", force_ascii=False))
                write_jsonl(tmp / arm / f"seed{seed}.jsonl", records)
                if chat is not None:
                    write_chat(chat / arm / f"seed{seed}.jsonl", records, params.models.student.system_prompt)
                # Statistics at the common beta, so arms compare on one scale.
                common = selection_stats(reference.set_index("response_id").loc[ids].reset_index())
                per_seed.append(common | {"mean_teacher_count_own_beta": selection_stats(chosen)["mean_teacher_count"]}
                                | ({"mean_temperature": float(temperature.loc[ids].mean())}
                                   if temperature is not None else {}))
            stats = pd.DataFrame(per_seed).mean().to_dict()
            summary["arms"][arm] = {"strategy": strategy, "beta": beta, "doc": STRATEGIES[strategy].doc,
                                    **{k: float(v) for k, v in stats.items()}}
        write_json(tmp / "summary.json", summary)
        write_table(tmp / "features.parquet", reference, "candidate_features")
    return summary


def pool_stats(features: pd.DataFrame, cands: pd.DataFrame) -> dict:
    """How much the candidates of one question differ in Teacher content (at the common beta): over questions with
    two or more candidates, the mean range and sd of their Teacher counts and ratios, and the share of questions
    whose candidates do not all have the same count. With a mixed-temperature pool, the mean per temperature."""
    multi = features.groupby("question_id").filter(lambda g: len(g) > 1).groupby("question_id")
    count_range = multi["n_teacher"].max() - multi["n_teacher"].min()
    out = {"n_questions_multi": int(multi.ngroups),
           "teacher_count_range": float(count_range.mean()) if len(count_range) else float("nan"),
           "teacher_count_sd": float(multi["n_teacher"].std().mean()) if len(count_range) else float("nan"),
           "teacher_ratio_range": float((multi["teacher_ratio"].max() - multi["teacher_ratio"].min()).mean())
           if len(count_range) else float("nan"),
           "share_questions_differ": float((count_range > 0).mean()) if len(count_range) else float("nan")}
    if "temperature" in cands.columns:
        with_t = features.merge(cands[["response_id", "temperature"]], on="response_id")
        by_t = with_t.groupby("temperature")
        out["by_temperature"] = {f"{t:g}": {"n": int(len(g)), "teacher_count": float(g["n_teacher"].mean()),
                                            "teacher_ratio": float(g["teacher_ratio"].mean())} for t, g in by_t}
    return out

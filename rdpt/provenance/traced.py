"""The traced responses as scoring inputs: generations + sentences tables, checked, turned into score items.

Shared by the score stage and the noise floor (both must score the very same tokens)::

    python -c "from rdpt.provenance.traced import read_traced; print(read_traced.__doc__)"
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rdpt import RdptError
from rdpt.io.artifacts import read_table
from rdpt.models import prompt_for_response, render_prompt
from rdpt.provenance.tokens import ScoreItem


def own_token_ids(gens: pd.DataFrame, rid: str, model: str | None) -> list[int] | None:
    """The ids ``model`` sampled for response ``rid`` (stop token cut off), when it wrote it; else None."""
    if model is None or "token_ids" not in gens.columns or "model" not in gens.columns:
        return None
    if gens.at[rid, "model"] != model or not isinstance(gens.at[rid, "token_ids"], (list, np.ndarray)):
        return None
    ids = [int(i) for i in gens.at[rid, "token_ids"]]
    return ids[:-1] if gens.at[rid, "finish_reason"] == "stop" and ids else ids


def row_system_prompt(gens: pd.DataFrame, rid) -> str | None:
    """The benchmark system prompt a response was sampled under (its row's ``system_prompt``), or None."""
    if "system_prompt" not in gens.columns:
        return None
    value = gens.at[rid, "system_prompt"]
    return value if isinstance(value, str) else None


def traced_items(tokenizer, gens: pd.DataFrame, sents: pd.DataFrame,
                 model: str | None = None) -> tuple[list[ScoreItem], list[list[int]]]:
    """One :class:`ScoreItem` per response of ``sents`` (sorted ids) under this tokenizer's template, and the
    sentence indices of each item in span order. ``gens`` is the generations table indexed by response_id;
    responses that ``model`` (a model path) sampled itself are scored on their sampled ids.

    The prompt is this model's rendering of the question (with the row's benchmark system prompt, if any),
    under the model's ``think`` rule (:func:`rdpt.models.prompt_for_response`): a response that repeats the
    end of the generation prompt (``<think>``) has it once in the context."""
    items, index = [], []
    for rid, group in sents.groupby("response_id", sort=True):
        group = group.sort_values("sentence_idx")
        spans = list(zip(group["start"].astype(int), group["end"].astype(int)))
        text = gens.at[rid, "text"]
        prompt = prompt_for_response(tokenizer, render_prompt(tokenizer, gens.at[rid, "question"],
                                                              row_system_prompt(gens, rid)), text)
        items.append(ScoreItem(key=rid, prompt=prompt, response=text, spans=spans,
                               token_ids=own_token_ids(gens, rid, model)))
        index.append(group["sentence_idx"].tolist())
    return items, index


def read_traced(generations_path: str, sentences_path: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(generations indexed by response_id, sentences), checked: every sentence's response exists and the
    sentences of each response rebuild its text (a stale table never reaches a model)."""
    gens = read_table(generations_path, "generations").set_index("response_id")
    sents = read_table(sentences_path, "sentences")
    missing = set(sents["response_id"]) - set(gens.index)
    if missing:
        raise RdptError(f"{sentences_path}: response_id {sorted(missing)[0]!r} not in {generations_path}")
    rebuilt = sents.sort_values(["response_id", "sentence_idx"]).groupby("response_id")["text"].agg("".join)
    stale = rebuilt.to_numpy() != gens.loc[rebuilt.index, "text"].to_numpy()
    if stale.any():
        raise RdptError(f"{sentences_path}: the sentences of response {rebuilt.index[stale.argmax()]!r} do not "
                        f"rebuild its text in {generations_path} (stale file? rerun segment: dvc repro)")
    return gens, sents

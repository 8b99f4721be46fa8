"""Params of the pipeline stages: sampling, training, segmentation, scoring, classification, statistics, selection,
teacher identification."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from rdpt.params.base import Section, Seed
from rdpt.params.inputs import ModelSpec, RowFilter, check_filter

Engine = Literal["hf", "vllm"]


class SamplingParams(Section):
    engine: Engine = Field("hf", description=(
        "hf = transformers generate; vllm = an offline vLLM engine (pip extra `vllm`). A model whose spec names "
        "a `server` is always sampled there."))
    num_samples: int = Field(1, ge=1, description="Responses per question (K).")
    temperature: float = Field(1.0, ge=0, description=(
        "0 = greedy decoding (one response per question: num_samples must be 1; top_p/top_k/min_p unused)."))
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0, description="Sample from the k most likely tokens only; 0 = off.")
    min_p: float = Field(0.0, ge=0, le=1, description=(
        "Drop tokens less likely than min_p x the top token's probability; 0 = off."))
    max_new_tokens: int = Field(256, ge=1)
    batch_size: int = Field(64, ge=1, description="Prompts per generate() call.")
    too_long: Literal["error", "skip"] = Field("error", description=(
        "A question whose prompt + max_new_tokens exceeds the model's context: error = stop before sampling, "
        "naming the dataset row; skip = leave the question out (counted in the stage's report and log)."))
    keep_logprobs: bool = Field(False, description=(
        "Keep each sampled token's raw log-prob and rank in the rows (token_logprobs, token_ranks): scoring "
        "the same model on its own samples then reads them instead of a second forward pass (hf and vllm "
        "engines; a server returns no ranks). docs/selection.md \"Reusing the teacher's sampling log-probs\"."))

    @model_validator(mode="after")
    def _greedy_has_one_sample(self):
        if self.temperature == 0 and self.num_samples != 1:
            raise PydanticCustomError("greedy_samples", "temperature 0 is greedy decoding: every sample would be "
                                      "the same response, so num_samples must be 1 (got {n})",
                                      {"n": self.num_samples})
        return self


class TeachParams(SamplingParams):
    n_questions: int | None = Field(None, ge=1, description="Train questions to answer; null = all.")
    only_correct: bool = Field(
        True, description="Keep only finished responses whose answer is right (rejection sampling).")


# transformers.SchedulerType members that run without lr_scheduler_kwargs or eval metrics (tests/test_bad_params.py
# checks they are SchedulerType members; importing transformers here would slow every stage's start).
LrScheduler = Literal["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                      "inverse_sqrt"]


class TrainParams(Section):
    """Supervised fine-tuning (loss on response tokens only), shared by `distill` and selection runs."""

    epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(-1, ge=-1, description="-1 = run `epochs` epochs.")
    learning_rate: float = Field(1e-3, gt=0)
    batch_size: int = Field(32, ge=1, description="Per-device batch size.")
    grad_accum: int = Field(1, ge=1)
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    lr_scheduler: LrScheduler = Field("cosine", description=(
        "transformers' lr_scheduler_type; the schedulers that need no extra kwargs or eval metrics."))
    max_length: int | None = Field(None, ge=8, description="Drop (and count) examples longer than this.")


class SegmentParams(Section):
    method: Literal["regex", "pysbd", "nltk"] = "regex"


class ScoreParams(Section):
    engine: Engine = Field("hf", description=(
        "hf = one forward pass per response (rdpt/score.py); vllm = prompt log-probs of an offline vLLM engine. "
        "A model whose spec names a `server` is always scored there."))
    chunk_size: int = Field(1024, ge=1, description="Positions per LM-head chunk (extra memory ~ chunk x vocab).")
    max_tokens_per_batch: int = Field(16384, ge=1, description="Padded tokens per forward batch.")
    rank_clip: int = Field(100, ge=1, description="Token ranks are clipped here before summing (Rank-Surprisal Ratio).")


# How a sentence's token log-probs become its log-prob (rdpt/provenance/rules.py AGGREGATES, same names)
ScoreAggregate = Literal["mean", "drop_first", "window_min"]


class ClassifyParams(Section):
    alpha: float | Literal["auto"] = Field(0.1, description=(
        "Shared if all pairwise |p differences| <= alpha; 'auto' = from the noise floor (rdpt/calibrate.py)."))
    beta: float | Literal["auto"] = Field(0.1, description=(
        "Teacher if pT - pS > beta; Student if pS - pT > beta; 'auto' = the alpha used."))
    beta_grid: list[float] = Field(
        [0.0, 0.025, 0.05, 0.075, 0.1, 0.125, 0.15, 0.175, 0.2, 0.225, 0.25, 0.275, 0.3],
        description="Betas of the sensitivity sweep (reports/plots/beta_sensitivity.csv), strictly increasing.")
    noise_responses: int = Field(32, ge=0, description=(
        "Traced responses the `noise` stages re-score to measure the noise floor; 0 = none (alpha: auto fails)."))
    noise_replicates: list[Literal["batch", "precision"]] = Field(["batch", "precision"], min_length=1, description=(
        "Re-scoring setups: batch = one response per batch; precision = also the other dtype (bf16 <-> fp32)."))
    noise_quantile: float = Field(0.95, gt=0, le=1, description="alpha: auto = this quantile of the noise floor.")
    aggregate: ScoreAggregate = Field("mean", description=(
        "Sentence log-prob the rule exponentiates: mean (of its tokens), drop_first (mean without its first token, "
        "ASLEC-DROP), window_min (lowest mean over 4 consecutive tokens); docs/scoring.md 'Score variants'."))

    @field_validator("alpha", "beta", mode="before")
    @classmethod
    def _threshold(cls, value: Any) -> Any:
        # One message per mistake instead of pydantic's one per member of the float | "auto" union.
        if isinstance(value, str) and value == "auto":
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise PydanticCustomError("threshold", "Input should be a number in [0, 1] or 'auto'")
        if value < 0:
            raise PydanticCustomError("greater_than_equal", "Input should be greater than or equal to 0")
        if value > 1:
            raise PydanticCustomError("less_than_equal", "Input should be less than or equal to 1")
        return float(value)

    @field_validator("beta_grid")
    @classmethod
    def _grid(cls, value: list[float]) -> list[float]:
        if not value:
            raise ValueError("give at least one beta")
        if any(not 0 <= b <= 1 for b in value):
            raise ValueError("every beta must be in [0, 1]")
        if any(a >= b for a, b in zip(value, value[1:])):
            raise ValueError("must be strictly increasing")
        return value

    @field_validator("noise_replicates")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("a replicate is named twice")
        return value


class CorrelateParams(Section):
    min_responses: int = Field(10, ge=1, description="Plot/measure sentence index k only with this many responses.")
    example: str | None = Field(None, description="response_id for the action-split figure; null = auto.")
    exclude_truncated: bool = Field(True, description=(
        "Leave traced responses cut at max_new_tokens (finish_reason 'length') out of the provenance "
        "statistics: they never reach an answer, so they would all count as incorrect. Counted in metrics."))
    n_bootstrap: int = Field(1000, ge=0, description=(
        "Question-bootstrap resamples for the 95% CIs of the point-biserial r and odds ratios; 0 = no CIs."))
    n_permutations: int = Field(1000, ge=0, description=(
        "Correctness relabellings for the p-values of the position-curve areas; 0 = no p-values."))
    permutation: Literal["within_question", "responses"] = Field("within_question", description=(
        "Permute correctness within question (falls back to all responses where no question has both "
        "outcomes) or over all responses of a benchmark."))
    reference: Literal["Shared", "Teacher", "Student", "Boosted"] = Field("Teacher", description=(
        "Class share left out of the logistic regression (the shares sum to 1); odds ratios read 'instead of it'."))
    seed: Seed = Field(0, description="Seed of the bootstrap and permutations (fixed: reports are reproducible).")


class ChatColumn(Section):
    """A column holding a conversation, a list of messages (OpenThoughts3's ``conversations``:
    ``[{"from": "human", "value": ...}, {"from": "gpt", "value": ...}]``)."""

    column: str = Field(description="The column with the list of messages.")
    role_key: str = Field("from", description="Key of a message's role (OpenAI-style lists: role).")
    content_key: str = Field("value", description="Key of a message's text (OpenAI-style lists: content).")
    question_role: str = Field("human", description="Role of the question's message (exactly one per row).")
    response_role: str = Field("gpt", description="Role of the response's message (exactly one per row).")

    @model_validator(mode="after")
    def _distinct(self) -> "ChatColumn":
        if self.question_role == self.response_role:
            raise ValueError("question_role and response_role must differ")
        if self.role_key == self.content_key:
            raise ValueError("role_key and content_key must differ")
        return self


class CandidateDataset(Section):
    """A dataset that already holds several responses per question (e.g. teacher traces of a public SFT set)."""

    path: str = Field(description="Local JSON/JSONL/CSV/Parquet file, or a hub dataset id.")
    name: str | None = Field(None, description="Hub dataset config name.")
    split: str = "train"
    revision: str | None = None
    question_field: str = "question"
    response_field: str = "response"
    answer_field: str | None = Field(None, description="Gold answer column; null = no correctness filter.")
    id_field: str | None = Field(None, description="Question id column; null = rows with the same question text "
                                                   "are candidates of one question.")
    source_field: str | None = Field(None, description="Column naming the model that wrote the response (kept).")
    limit: int | None = Field(None, ge=1, description="Use only the first N rows (after `filter`).")
    filter: RowFilter | None = Field(None, description=(
        "Read only the rows whose columns hold these values, e.g. {category: math} (AceReason-1.1-SFT's math "
        "rows); null = every row."))
    chat: ChatColumn | None = Field(None, description=(
        "Question and response read from one conversation column by role (OpenThoughts3); replaces "
        "question_field and response_field."))
    pseudo_gold: bool = Field(False, description=(
        "No gold column: each row's gold is the last \\boxed{} answer after </think> in its own response, when "
        "math-verify parses it (as AceReason's authors filter their data); a row without one has no gold (counted "
        "in the candidates report), and only_correct drops it."))

    @field_validator("filter")
    @classmethod
    def _filter(cls, value: RowFilter | None) -> RowFilter | None:
        return check_filter(value)

    @model_validator(mode="after")
    def _columns(self) -> "CandidateDataset":
        if self.chat is not None and {"question_field", "response_field"} & self.model_fields_set:
            raise ValueError("chat replaces question_field and response_field: give one or the other")
        if self.pseudo_gold and self.answer_field is not None:
            raise ValueError("pseudo_gold reads the gold from each response: set answer_field to null")
        return self


class CandidatesParams(SamplingParams):
    """Candidate responses for selection: K teacher samples per train question, or a dataset of them."""

    source: Literal["teacher", "dataset"] = Field("teacher", description=(
        "teacher = sample num_samples (K) responses per question of data.train; dataset = read `dataset`."))
    n_questions: int | None = Field(None, ge=1, description="teacher source: first N questions of data.train.")
    only_correct: bool = Field(True, description="Keep only finished candidates whose answer is right.")
    temperatures: list[float] | None = Field(None, description=(
        "teacher source: a mixed-temperature pool, num_samples / len(temperatures) candidates per question at each "
        "temperature (replaces `temperature`; each row records its own); null = all at `temperature`."))
    dataset: CandidateDataset | None = None

    @model_validator(mode="after")
    def _dataset_given(self) -> "CandidatesParams":
        if self.source == "dataset" and self.dataset is None:
            raise ValueError("source 'dataset' needs select.candidates.dataset")
        return self

    @model_validator(mode="after")
    def _temperatures_split_samples(self) -> "CandidatesParams":
        temps = self.temperatures
        if temps is None:
            return self
        if not temps or len(set(temps)) != len(temps) or min(temps) <= 0:
            raise PydanticCustomError("temperatures", "temperatures must be distinct and > 0 (got {t})", {"t": temps})
        if self.num_samples % len(temps):
            raise PydanticCustomError("temperatures", "num_samples ({n}) must be a multiple of the number of "
                                      "temperatures ({m})", {"n": self.num_samples, "m": len(temps)})
        return self

    def at_temperatures(self) -> list[tuple[float, "CandidatesParams"]]:
        """(temperature, the sampling spec used at it): one entry, or one per mixed-pool temperature."""
        if self.temperatures is None:
            return [(self.temperature, self)]
        per = self.num_samples // len(self.temperatures)
        return [(t, self.model_copy(update={"temperature": t, "num_samples": per, "temperatures": None}))
                for t in self.temperatures]


class SelectEvalParams(Section):
    """How the selection runs' students (and `select_untrained`'s untrained one) are evaluated; null = the
    `generate` stage's value (and a benchmark's own ``num_samples``)."""

    temperature: float | None = Field(None, ge=0, description=(
        "Sampling temperature of the evaluation (0 = greedy, with num_samples 1)."))
    top_p: float | None = Field(None, gt=0, le=1)
    num_samples: int | None = Field(None, ge=1, description="Responses per benchmark question (k of avg@k).")

    def apply(self, sampling: SamplingParams) -> SamplingParams:
        """``sampling`` (one benchmark's, from `generate`) with this section's non-null values (a greedy
        temperature with k > 1 is refused when the params load: ``Params._greedy_select_eval``)."""
        update = {k: v for k, v in self.model_dump().items() if v is not None}
        return sampling.model_copy(update=update) if update else sampling


class SelectContrastParams(Section):
    """More seeds for a few arms (the primary contrast), on top of ``select.seeds`` for every arm."""

    arms: list[str] = Field(default_factory=list, description="Arms also run at ``seeds`` (a subset of select.arms).")
    seeds: list[int] = Field(default_factory=list, description="Extra seeds, none of them in select.seeds.")


class SelectParams(Section):
    """Teacher-guided data selection: one candidate per question per arm, a student fine-tuned per arm x seed."""

    candidates: CandidatesParams = CandidatesParams(num_samples=4)
    train: TrainParams = Field(TrainParams(), description=(
        "The selection runs' own fine-tuning budget (distill's trainer; `distill` trains the traced model)."))
    beta: float = Field(0.1, ge=0, le=1, description="Teacher if pT - pS > beta (per candidate sentence).")
    arms: list[str] = Field(
        default_factory=lambda: ["teacher_count", "random", "grape", "longest", "teacher_ratio", "min_teacher_count",
                                 "rsr"],
        description="Strategies to train on; '<strategy>_beta<b>' runs a beta-dependent one at beta b.")
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], description="One fine-tuning per arm and seed.")
    contrast: SelectContrastParams = Field(SelectContrastParams(), description=(
        "Extra seeds for some arms: Table 1's primary Δ (teacher_count vs random) gets a tighter interval without "
        "running every baseline that often."))
    eval: SelectEvalParams = Field(SelectEvalParams(), description="The runs' evaluation sampling (null = generate's).")
    keep_models: bool = Field(False, description="Keep each fine-tuned student in its run folder.")
    aggregate: ScoreAggregate = Field("mean", description=(
        "Sentence log-prob behind p for the Teacher/Student labels of every arm (as classify.aggregate)."))

    @field_validator("arms")
    @classmethod
    def _known_arms(cls, value: list[str]) -> list[str]:
        from rdpt.selection.arms import parse_arm

        if not value:
            raise ValueError("give at least one arm")
        if len(set(value)) != len(value):
            raise ValueError("arms must be distinct")
        for arm in value:
            parse_arm(arm)  # raises ValueError naming the arm
        return value

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, value: list[int]) -> list[int]:
        if not value or len(set(value)) != len(value) or min(value) < 0 or max(value) >= 2**32:
            raise ValueError("give one or more distinct seeds, 0 <= seed < 2**32")
        return value

    @model_validator(mode="after")
    def _contrast(self):
        c = self.contrast
        if bool(c.arms) != bool(c.seeds):
            raise ValueError("contrast: give both arms and seeds, or neither")
        unknown = [a for a in c.arms if a not in self.arms]
        if unknown:
            raise ValueError(f"contrast.arms: {unknown[0]!r} is not in select.arms")
        if len(set(c.arms)) != len(c.arms) or len(set(c.seeds)) != len(c.seeds):
            raise ValueError("contrast: arms and seeds must be distinct")
        if c.seeds and (min(c.seeds) < 0 or max(c.seeds) >= 2**32 or set(c.seeds) & set(self.seeds)):
            raise ValueError("contrast.seeds: 0 <= seed < 2**32, and none already in select.seeds")
        return self


_CANDIDATE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


class IdentifyParams(Section):
    """Teacher identification (``rdpt/identify.py``): which candidate teacher explains the distilled model."""

    candidates: dict[str, ModelSpec] = Field(
        default_factory=lambda: {"teacher": ModelSpec(path="data/toy/models/teacher"),
                                 "alt_teacher": ModelSpec(path="data/toy_alt/teacher")},
        description="name -> model (a hub id / folder, or {path, revision, chat_template}); at least two. A "
                    "candidate equal to models.teacher reuses the teacher's scores instead of scoring again.")
    n_bootstrap: int = Field(1000, ge=0, description="Question-bootstrap resamples for the 95% CIs (0 = none).")
    n_permutations: int = Field(10000, ge=0, description=(
        "Sign flips over questions for the p-value of each pairwise difference (0 = none)."))
    seed: Seed = Field(0, description="Seed of the bootstrap and the sign flips.")

    @field_validator("candidates", mode="before")
    @classmethod
    def _path_shorthand(cls, value: Any) -> Any:
        # `name: path` is short for `name: {path: path}`
        if isinstance(value, dict):
            return {k: {"path": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    @field_validator("candidates")
    @classmethod
    def _candidates(cls, value: dict[str, ModelSpec]) -> dict[str, ModelSpec]:
        if len(value) < 2:
            raise ValueError("name at least two candidate teachers")
        seen: dict[tuple, str] = {}
        for name, spec in value.items():
            if not _CANDIDATE_NAME.fullmatch(name):
                raise ValueError(f"candidate name {name!r}: use letters, digits and _ (a DVC stage and metrics key)")
            if spec.path is None:
                raise ValueError(f"candidate {name!r}: path is required")
            key = (spec.path, spec.revision, spec.chat_template, spec.system_prompt, repr(spec.chat_template_kwargs),
                   spec.think, repr(spec.config_overrides))
            if key in seen:
                raise ValueError(f"candidates {seen[key]!r} and {name!r} name the same model")
            seen[key] = name
        return value

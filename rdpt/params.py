"""The one typed, validated params object.

Every stage reads ``params.yaml`` through :func:`load_params`; unknown keys, wrong types and
out-of-range values are rejected up front with a one-line error that names the key::

    python -c "from rdpt.params import load_params; print(load_params('params.yaml').classify)"
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from rdpt import RdptError


class _Section(BaseModel):
    # extra="forbid": a typo in params.yaml is an error, never a silently ignored key.
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(_Section):
    path: str | None = Field(description="Hub id or local folder, loaded with AutoModelForCausalLM/AutoTokenizer.")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit); null = default.")
    chat_template: str | None = Field(
        None, description="Jinja chat template to use when the tokenizer has none (or to override it)."
    )
    server: str | None = Field(None, description=(
        "Base URL of a running vLLM OpenAI-compatible server that serves this model (e.g. http://host:8000/v1). "
        "When set, this model's sampling and scoring go to the server (the `server` engine); the tokenizer is "
        "still loaded from `path` (chat template, character offsets)."))

    @field_validator("server")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"server {value!r}: expected an http(s) URL such as http://127.0.0.1:8000/v1")
        return value.rstrip("/") if value else value


class ModelsParams(_Section):
    teacher: ModelSpec
    student: ModelSpec
    distilled: ModelSpec = Field(
        ModelSpec(path=None),
        description="An existing distilled checkpoint; path null = fine-tune the student in `distill`.",
    )


class DatasetSpec(_Section):
    path: str = Field(description="Local JSON/JSONL/CSV/Parquet file, or a hub dataset id.")
    name: str | None = Field(None, description="Hub dataset config name.")
    split: str = Field("train", description="Split to read (a local file has only 'train').")
    revision: str | None = None
    question_field: str = "question"
    answer_field: str = "answer"
    id_field: str | None = Field(None, description="Column with a unique id; null = row index.")
    limit: int | None = Field(None, ge=1, description="Use only the first N rows.")
    distractor_fields: list[str] | None = Field(None, description=(
        "Multiple choice (e.g. GPQA): columns holding the wrong options; answer_field holds the right one. The "
        "options are appended to the question under letters A, B, ... in an order fixed by the row id, and the "
        "gold answer is the right option's letter. null = free-form answer."))
    prompt_template: str | None = Field(None, description=(
        "Text the question is put into, with '{question}' where the question (and its lettered options) goes; "
        "null = the question alone."))

    @field_validator("distractor_fields")
    @classmethod
    def _distinct_distractors(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not 1 <= len(value) <= 25:
            raise ValueError("give 1 to 25 columns (options are lettered A-Z)")
        if value is not None and len(set(value)) != len(value):
            raise ValueError("a column is named twice")
        return value

    @field_validator("prompt_template")
    @classmethod
    def _has_question(cls, value: str | None) -> str | None:
        if value is not None and "{question}" not in value:
            raise ValueError("must contain '{question}'")
        return value

    @model_validator(mode="after")
    def _answer_not_a_distractor(self) -> "DatasetSpec":
        if self.distractor_fields and self.answer_field in self.distractor_fields:
            raise ValueError(f"answer_field {self.answer_field!r} is also in distractor_fields")
        return self


class DataParams(_Section):
    train: DatasetSpec = Field(description="Questions the teacher answers in `teach` (distillation data).")
    benchmarks: dict[str, DatasetSpec] = Field(description="Test benchmarks: name -> dataset.")

    @field_validator("benchmarks")
    @classmethod
    def _non_empty(cls, value: dict[str, DatasetSpec]) -> dict[str, DatasetSpec]:
        if not value:
            raise ValueError("at least one benchmark is required")
        return value


class ToyParams(_Section):
    """The embedded toy world: a synthetic arithmetic task and two tiny LMs trained from scratch.

    Per-model fields are ``<role>_<field>`` (role = teacher | student); a new toy model adds its
    own block of fields and a style in ``rdpt.toy``. Defaults build in ~4 minutes on 2 CPU cores.
    """

    seed: int = Field(0, description="Seed of the toy data, tokenizers, model init and training.")
    n_train_questions: int = Field(2000, ge=10, description="Questions in data/train.jsonl (for `teach`).")
    n_test_questions: int = Field(100, ge=2, description="Questions per toy benchmark (toy_easy, toy_hard).")
    teacher_corpus: int = Field(20000, ge=10, description="Worked solutions the toy teacher is trained on.")
    student_corpus: int = Field(200, ge=10, description="Worked 2-3 step solutions of the toy student (few: weak).")
    teacher_one_step: int = Field(0, ge=0, description="Extra one-step solutions in the teacher's training data.")
    student_one_step: int = Field(3000, ge=0, description=(
        "Extra one-step solutions of the student: it can read a change and do the sum, but has seen "
        "little multi-step reasoning, so distillation has something to teach (like a base model)."))
    teacher_vocab: int = Field(512, ge=300, description="BPE vocabulary size of the teacher tokenizer.")
    student_vocab: int = Field(480, ge=300, description="BPE vocabulary size of the student tokenizer.")
    teacher_layers: int = Field(4, ge=1, description="Transformer blocks of the teacher (Llama).")
    teacher_hidden: int = Field(128, ge=16, description="Hidden size of the teacher.")
    teacher_heads: int = Field(4, ge=1, description="Attention heads of the teacher (divide hidden).")
    teacher_steps: int = Field(1400, ge=1, description="Optimizer steps of teacher training.")
    student_layers: int = Field(3, ge=1, description="Transformer blocks of the student (Qwen3).")
    student_hidden: int = Field(128, ge=16, description="Hidden size of the student.")
    student_heads: int = Field(4, ge=1, description="Attention heads of the student (divide hidden).")
    student_steps: int = Field(400, ge=1, description="Optimizer steps of student training.")
    batch_size: int = Field(16, ge=1, description="Training batch size of both toy models (small: more updates).")
    learning_rate: float = Field(3e-3, gt=0, description="Peak learning rate of both toy models.")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="Linear warmup share of training (cosine decay).")
    context: int = Field(512, ge=64, description="Max positions of the toy models (room for teacher-style text).")
    eval_max_new_tokens: int = Field(160, ge=1, description="Token limit of the report's accuracy sampling.")

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> "ToyParams":
        for role in ("teacher", "student"):
            hidden, heads = getattr(self, f"{role}_hidden"), getattr(self, f"{role}_heads")
            if hidden % heads:
                raise ValueError(f"{role}_hidden ({hidden}) must be a multiple of {role}_heads ({heads})")
        return self


class ToyAltParams(_Section):
    """A second, unrelated toy teacher for teacher identification (``rdpt/toy_alt.py``): GPT-2, its own
    sentence style, BPE and chat template, trained on the toy task but never distilled. ~2.5 min on 2 CPU cores."""

    seed: int = Field(0, description="Seed of its corpus, solutions, tokenizer, init and training.")
    corpus: int = Field(12000, ge=10, description="Worked 2-3 step solutions it is trained on (train combos only).")
    vocab: int = Field(400, ge=300, description="BPE vocabulary size of its tokenizer.")
    layers: int = Field(3, ge=1, description="Transformer blocks (GPT-2).")
    hidden: int = Field(128, ge=16, description="Hidden size.")
    heads: int = Field(4, ge=1, description="Attention heads (divide hidden).")
    steps: int = Field(1000, ge=1, description="Optimizer steps.")
    batch_size: int = Field(16, ge=1, description="Training batch size.")
    learning_rate: float = Field(2e-3, gt=0, description="Peak learning rate (cosine decay).")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="Linear warmup share of training.")
    context: int = Field(512, ge=64, description="Max positions (GPT-2 learns one embedding per position).")
    eval_max_new_tokens: int = Field(160, ge=1, description="Token limit of the build report's accuracy check.")

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> "ToyAltParams":
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be a multiple of heads ({self.heads})")
        return self


Engine = Literal["hf", "vllm"]


class SamplingParams(_Section):
    engine: Engine = Field("hf", description=(
        "hf = transformers generate; vllm = an offline vLLM engine (pip extra `vllm`). A model whose spec names "
        "a `server` is always sampled there."))
    num_samples: int = Field(1, ge=1, description="Responses per question (K).")
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(256, ge=1)
    batch_size: int = Field(64, ge=1, description="Prompts per generate() call.")


class TeachParams(SamplingParams):
    n_questions: int | None = Field(None, ge=1, description="Train questions to answer; null = all.")
    only_correct: bool = Field(
        True, description="Keep only finished responses whose answer is right (rejection sampling).")


class TrainParams(_Section):
    """Supervised fine-tuning (loss on response tokens only), shared by `distill` and selection runs."""

    epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(-1, ge=-1, description="-1 = run `epochs` epochs.")
    learning_rate: float = Field(1e-3, gt=0)
    batch_size: int = Field(32, ge=1, description="Per-device batch size.")
    grad_accum: int = Field(1, ge=1)
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    lr_scheduler: str = "cosine"
    max_length: int | None = Field(None, ge=8, description="Drop (and count) examples longer than this.")


class SegmentParams(_Section):
    method: Literal["regex", "pysbd", "nltk"] = "regex"


class ScoreParams(_Section):
    engine: Engine = Field("hf", description=(
        "hf = one forward pass per response (rdpt/score.py); vllm = prompt log-probs of an offline vLLM engine. "
        "A model whose spec names a `server` is always scored there."))
    chunk_size: int = Field(1024, ge=1, description="Positions per LM-head chunk (extra memory ~ chunk x vocab).")
    max_tokens_per_batch: int = Field(16384, ge=1, description="Padded tokens per forward batch.")
    rank_clip: int = Field(100, ge=1, description="Token ranks are clipped here before summing (Rank-Surprisal Ratio).")


class ClassifyParams(_Section):
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


class CorrelateParams(_Section):
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
    seed: int = Field(0, description="Seed of the bootstrap and permutations (fixed: reports are reproducible).")


class CandidateDataset(_Section):
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
    limit: int | None = Field(None, ge=1, description="Use only the first N rows.")


class CandidatesParams(SamplingParams):
    """Candidate responses for selection: K teacher samples per train question, or a dataset of them."""

    source: Literal["teacher", "dataset"] = Field("teacher", description=(
        "teacher = sample num_samples (K) responses per question of data.train; dataset = read `dataset`."))
    n_questions: int | None = Field(None, ge=1, description="teacher source: first N questions of data.train.")
    only_correct: bool = Field(True, description="Keep only finished candidates whose answer is right.")
    dataset: CandidateDataset | None = None

    @model_validator(mode="after")
    def _dataset_given(self) -> "CandidatesParams":
        if self.source == "dataset" and self.dataset is None:
            raise ValueError("source 'dataset' needs select.candidates.dataset")
        return self


class SelectParams(_Section):
    """Teacher-guided data selection: one candidate per question per arm, a student fine-tuned per arm x seed."""

    candidates: CandidatesParams = CandidatesParams(num_samples=4)
    beta: float = Field(0.1, ge=0, le=1, description="Teacher if pT - pS > beta (per candidate sentence).")
    arms: list[str] = Field(
        default_factory=lambda: ["teacher_count", "random", "grape", "longest", "teacher_ratio", "min_teacher_count",
                                 "rsr"],
        description="Strategies to train on; '<strategy>_beta<b>' runs a beta-dependent one at beta b.")
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], description="One fine-tuning per arm and seed.")
    keep_models: bool = Field(False, description="Keep each fine-tuned student in its run folder.")

    @field_validator("arms")
    @classmethod
    def _known_arms(cls, value: list[str]) -> list[str]:
        from rdpt.select import parse_arm

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
        if not value or len(set(value)) != len(value) or min(value) < 0:
            raise ValueError("give one or more distinct seeds >= 0")
        return value


_CANDIDATE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


class IdentifyParams(_Section):
    """Teacher identification (``rdpt/identify.py``): which candidate teacher explains the distilled model."""

    candidates: dict[str, ModelSpec] = Field(
        default_factory=lambda: {"teacher": ModelSpec(path="data/toy/models/teacher"),
                                 "alt_teacher": ModelSpec(path="data/toy_alt/teacher")},
        description="name -> model (a hub id / folder, or {path, revision, chat_template}); at least two. A "
                    "candidate equal to models.teacher reuses the teacher's scores instead of scoring again.")
    n_bootstrap: int = Field(1000, ge=0, description="Question-bootstrap resamples for the 95% CIs (0 = none).")
    n_permutations: int = Field(10000, ge=0, description=(
        "Sign flips over questions for the p-value of each pairwise difference (0 = none)."))
    seed: int = Field(0, description="Seed of the bootstrap and the sign flips.")

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
            key = (spec.path, spec.revision, spec.chat_template)
            if key in seen:
                raise ValueError(f"candidates {seen[key]!r} and {name!r} name the same model")
            seen[key] = name
        return value


class VllmParams(_Section):
    """Settings of the offline vLLM engine (``engine: vllm``), passed to ``vllm.LLM``."""

    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description=(
        "Share of GPU memory vLLM reserves; on CPU the share of RAM for its KV cache (use ~0.3 there)."))
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one model is split over.")
    max_model_len: int | None = Field(None, ge=16, description="Context vLLM plans for; null = the model's own.")
    max_num_seqs: int | None = Field(None, ge=1, description="Sequences per engine step; null = vLLM's default.")
    enforce_eager: bool = Field(False, description="Skip CUDA graph capture (faster start, slower decoding).")
    kwargs: dict[str, Any] = Field({}, description="Any other vllm.LLM keyword arguments, passed as is.")


class ServerParams(_Section):
    """How rdpt talks to a vLLM OpenAI-compatible server (models.<role>.server)."""

    batch_size: int = Field(16, ge=1, description="Prompts per /v1/completions request.")
    max_retries: int = Field(5, ge=0, description="Retries of a failed request (connection error, 5xx, 429).")
    backoff_s: float = Field(1.0, ge=0, description="First retry delay; doubles on each retry.")
    timeout_s: float = Field(600.0, gt=0, description="Per-request timeout.")
    api_key_env: str | None = Field(None, description="Environment variable holding the server's API key.")


class LaunchParams(_Section):
    """How `distill` and the selection runs train: in this process, or under ``accelerate launch``."""

    num_processes: int = Field(1, ge=1, description=(
        "Training processes (one per GPU; on CPU, gloo processes). >1 or a config_file runs accelerate launch. "
        "The global batch is distill.batch_size x grad_accum x num_processes."))
    mixed_precision: Literal["no", "fp16", "bf16"] | None = Field(None, description=(
        "accelerate launch --mixed_precision; null = the config file's (or accelerate's default)."))
    config_file: str | None = Field(None, description=(
        "An accelerate config (e.g. configs/accelerate/fsdp.yaml): DDP, FSDP or DeepSpeed by config."))
    main_process_port: int | None = Field(None, ge=1, le=65535, description="Rendezvous port; null = a free one.")


class Params(_Section):
    seed: int = Field(0, description="Global seed (sampling, training, shuffling).")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights dtype; auto = bfloat16 on CUDA, float32 on CPU."
    )
    models: ModelsParams
    data: DataParams
    toy: ToyParams = ToyParams()
    teach: TeachParams = TeachParams()
    distill: TrainParams = TrainParams()
    generate: SamplingParams = SamplingParams()
    segment: SegmentParams = SegmentParams()
    score: ScoreParams = ScoreParams()
    classify: ClassifyParams = ClassifyParams()
    correlate: CorrelateParams = CorrelateParams()
    select: SelectParams = SelectParams()
    toy_alt: ToyAltParams = ToyAltParams()
    identify: IdentifyParams = IdentifyParams()
    vllm: VllmParams = VllmParams()
    server: ServerParams = ServerParams()
    launch: LaunchParams = LaunchParams()

    @model_validator(mode="after")
    def _models_named(self) -> "Params":
        for role in ("teacher", "student"):
            if getattr(self.models, role).path is None:
                raise ValueError(f"models.{role}.path is required")
        return self


def _format_error(source: str, err: ValidationError) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "<root>"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    elif "input" in first and not isinstance(first["input"], dict):
        msg = f"{msg} (got {first['input']!r})"
    more = f" (+{len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{source}: {key}: {msg}{more}"


def parse_params(data: dict[str, Any], source: str = "params") -> Params:
    try:
        return Params.model_validate(data)
    except ValidationError as err:
        raise RdptError(_format_error(source, err)) from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML file's top-level mapping; a missing file, bad YAML or a non-mapping is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise RdptError(f"{path}: params file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise RdptError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise RdptError(f"{path}: expected a mapping at the top level")
    return data


def load_params(path: str | Path = "params.yaml") -> Params:
    return parse_params(read_yaml(path), str(path))

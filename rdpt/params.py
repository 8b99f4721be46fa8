"""The one typed, validated params object.

Every stage reads ``params.yaml`` through :func:`load_params`; unknown keys, wrong types and
out-of-range values are rejected up front with a one-line error that names the key::

    python -c "from rdpt.params import load_params; print(load_params('params.yaml').classify)"
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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


class SamplingParams(_Section):
    num_samples: int = Field(1, ge=1, description="Responses per question (K).")
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(256, ge=1)
    batch_size: int = Field(64, ge=1, description="Prompts per generate() call.")


class TeachParams(SamplingParams):
    n_questions: int | None = Field(None, ge=1, description="Train questions to answer; null = all.")
    only_correct: bool = Field(True, description="Keep only finished responses whose answer is right (rejection sampling).")


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
    chunk_size: int = Field(1024, ge=1, description="Positions per LM-head chunk (extra memory ~ chunk x vocab).")
    max_tokens_per_batch: int = Field(16384, ge=1, description="Padded tokens per forward batch.")


class ClassifyParams(_Section):
    alpha: float = Field(0.1, ge=0, le=1, description="Shared if all pairwise |p differences| <= alpha.")
    beta: float = Field(0.1, ge=0, le=1, description="Teacher if pT - pS > beta; Student if pS - pT > beta.")


class CorrelateParams(_Section):
    min_responses: int = Field(10, ge=1, description="Plot/measure sentence index k only with this many responses.")
    example: str | None = Field(None, description="response_id for the action-split figure; null = auto.")


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


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.exists():
        raise RdptError(f"{path}: params file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise RdptError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise RdptError(f"{path}: expected a mapping at the top level")
    return parse_params(data, str(path))

"""Params of what goes in: the models (hub id, folder or GGUF; template settings) and the datasets (toy world
included)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from rdpt.params.base import Section, Seed, check_name

# transformers' device_map placement strategies (any other string names one device)
STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")


class ModelSpec(Section):
    path: str | None = Field(description="Hub id or local folder, loaded with AutoModelForCausalLM/AutoTokenizer.")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit); null = default.")
    chat_template: str | None = Field(
        None, description="Jinja chat template to use when the tokenizer has none (or to override it)."
    )
    gguf_file: str | None = Field(None, description=(
        "A GGUF checkpoint file inside `path` (e.g. SmolLM2-135M-Instruct.Q4_1.gguf): tokenizer and weights are "
        "read from it and de-quantized at every load (needs the `real` extra: gguf); pinned files are checked "
        "by sha256. For repeated runs convert it once: python -m rdpt.real_assets install."))
    server: str | list[str] | None = Field(None, description=(
        "Base URL of a running vLLM OpenAI-compatible server that serves this model (e.g. http://host:8000/v1), "
        "or a list of base URLs of several `vllm serve` replicas of the same model: each request goes to the "
        "replica with the fewest requests in flight, and each prompt keeps its own seed, so results do not "
        "depend on which replica answered. When set, this model's sampling and scoring go to the server(s) "
        "(the `server` engine; the settings and API key of `server:` apply to every URL); the tokenizer is "
        "still loaded from `path` (chat template, character offsets)."))
    system_prompt: str | None = Field(None, description=(
        "System message put before the question in this model's chat template (e.g. LIMO-v2's 'Please reason step "
        "by step...', 'You are a helpful assistant.'); null = none. A benchmark's data.<...>.system_prompt wins."))
    chat_template_kwargs: dict[str, Any] | None = Field(None, description=(
        "Extra arguments of this model's chat template, e.g. {enable_thinking: false} for Qwen3; null = none."))
    think: Literal["auto", "keep"] = Field("auto", description=(
        "auto = when a traced response begins with what the rendered generation prompt ends with (an R1-style "
        "template's '<think>\\n', a response starting with '<think>'), that overlap is cut from the end of the "
        "prompt, so the context holds it once (scoring and fine-tuning); keep = the prompt as rendered."))
    config_overrides: dict[str, Any] | None = Field(None, description=(
        "Model config fields set when the model is loaded (HF: AutoConfig + these; vLLM: hf_overrides), e.g. "
        "{rope_scaling: {type: yarn, factor: 4.0, original_max_position_embeddings: 32768}, "
        "max_position_embeddings: 131072} to trace responses past the model's own window; recorded in the "
        "scores' cost.json with the original window. null = the checkpoint's config."))

    device_map: str | dict[str, int | str] | None = Field(None, description=(
        "HF engine only: handed as is to transformers' from_pretrained(device_map=...), which lets accelerate "
        "shard a model bigger than one GPU over every visible GPU (then CPU, then disk offload): auto | balanced "
        "| balanced_low_0 | sequential, one device (cpu, cuda:1, mps), or {module name: device} (a GPU index, "
        "cpu or disk). Scores equal a plain load's; it only changes where the weights sit. null = the whole "
        "model on `device`. The vllm and server engines ignore it (vLLM shards with tensor_parallel_size); "
        "training never uses it."))
    max_memory: dict[str, str] | None = Field(None, description=(
        "With device_map: the most each device may hold, e.g. {'0': 70GiB, '1': 70GiB, cpu: 200GiB} (GPU index "
        "as a string); null = accelerate's estimate of what is free."))

    @field_validator("device_map")
    @classmethod
    def _device_map(cls, value: str | dict[str, int | str] | None) -> str | dict[str, int | str] | None:
        device = r"(cpu|mps|disk|meta|(cuda|xpu|npu)(:[0-9]+)?)"
        if isinstance(value, str) and value not in STRATEGIES and not re.fullmatch(device, value):
            raise ValueError(f"{value!r}: one of {', '.join(STRATEGIES)}, a device (cpu, cuda:0, mps) or a dict")
        for module, where in (value if isinstance(value, dict) else {}).items():
            if isinstance(where, str) and not re.fullmatch(device, where):
                raise ValueError(f"module {module!r} -> {where!r}: a GPU index, a device (cpu, cuda:0) or disk")
        if isinstance(value, dict) and not value:
            raise ValueError("name at least one module, or null")
        return value

    @field_validator("max_memory")
    @classmethod
    def _memory_keys(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for key in value or {}:
            if not (key.isdigit() or key in ("cpu", "mps", "disk")):
                raise ValueError(f"{key!r}: a GPU index ('0', '1', ...), cpu, mps or disk")
        return value

    @model_validator(mode="after")
    def _memory_needs_map(self) -> "ModelSpec":
        if self.max_memory is not None and self.device_map is None:
            raise ValueError("max_memory is set but device_map is null: give device_map (e.g. auto) too")
        return self

    @field_validator("chat_template_kwargs")
    @classmethod
    def _template_kwargs(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        reserved = {"conversation", "messages", "tools", "documents", "chat_template", "add_generation_prompt",
                    "continue_final_message", "tokenize", "padding", "truncation", "max_length",
                    "return_tensors", "return_dict", "return_assistant_tokens_mask", "tokenizer_kwargs"}
        for key in value or {}:
            if key in reserved:
                raise ValueError(f"{key!r} is an argument rdpt sets itself, not a template variable")
        return value

    @field_validator("config_overrides")
    @classmethod
    def _overrides(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and not value:
            raise ValueError("give at least one field, or null")
        return value

    @model_validator(mode="before")
    @classmethod
    def _server_url(cls, data: Any) -> Any:
        # A check of the whole spec, not a field validator: a params error line repeats a field's bad value, and
        # a URL may hold a password. Credentials and queries are refused and never repeated here
        # (rdpt.engines.server.redact prints URLs the same way).
        value = data.get("server") if isinstance(data, dict) else None
        if isinstance(value, str):
            return {**data, "server": _base_url(value)}
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            urls = [_base_url(v) for v in value]
            if not urls:
                raise ValueError("server: an empty list; give one base URL or several, or null")
            if len(set(urls)) < len(urls):
                raise ValueError("server: a URL is listed twice (each replica once)")
            # one URL in a list is that URL: the same journal keys and engine as `server: URL`
            return {**data, "server": urls[0] if len(urls) == 1 else urls}
        return data  # absent, null, or a wrong type (the field reports it)


def _base_url(value: str) -> str:
    """``value`` as a server base URL (no trailing /), or a ValueError that never repeats credentials."""
    shown = re.sub(r"\?\S*", "?<redacted>", re.sub(r"(?<=//)[^/?#\s]*@", "<redacted>@", value))
    match = re.fullmatch(r"https?://([^/?#\s]*)(/[^?#\s]*)?", value)
    if match is None:
        if re.match(r"https?://[^/?#\s]+[^?#\s]*[?#]", value):
            raise ValueError(f"server {shown!r}: expected a base URL without ?query or #fragment, such as "
                             "http://127.0.0.1:8000/v1")
        raise ValueError(f"server {shown!r}: expected an http(s) URL such as http://127.0.0.1:8000/v1")
    if "@" in match[1]:
        raise ValueError(f"server {shown!r}: credentials in the URL are refused (they would show in logs and "
                         "errors); start vllm serve with --api-key and name the environment variable that "
                         "holds the key in server.api_key_env")
    if not re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(:[0-9]{1,5})?", match[1]):
        raise ValueError(f"server {shown!r}: {match[1]!r} is not a host or host:port")
    return value.rstrip("/")


class ModelsParams(Section):
    teacher: ModelSpec
    student: ModelSpec
    distilled: ModelSpec = Field(
        ModelSpec(path=None),
        description="An existing distilled checkpoint; path null = fine-tune the student in `distill`.",
    )


# A row filter: column -> the value (or any of the values) a row must hold there to be read.
FilterValue = str | int | bool
RowFilter = dict[str, FilterValue | list[FilterValue]]


def check_filter(value: RowFilter | None) -> RowFilter | None:
    """Shared by every dataset section: a filter names at least one column and each list at least one value."""
    if value is None:
        return value
    if not value:
        raise ValueError("name at least one column, or null")
    for column, wanted in value.items():
        if isinstance(wanted, list) and not wanted:
            raise ValueError(f"column {column!r}: give at least one value")
    return value


class DatasetSpec(Section):
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
    system_prompt: str | None = Field(None, description=(
        "System message for this benchmark's prompts, in every model's template; wins over models.<role>."
        "system_prompt ('' = no system message at all); null = each model's own. Recorded in each sampled row "
        "(`system_prompt`), so scoring and fine-tuning rebuild the same prompt."))
    answer_format: Literal["text", "list"] = Field("text", description=(
        "text = answer_field holds one gold answer; list = it holds a list of gold parts (OlympiadBench's "
        "final_answer): a response is right only when it gives every part and no other, paired one to one "
        "(rdpt/generation/grade.py); a one-part list is an ordinary answer."))
    multiple_answer_field: str | None = Field(None, description=(
        "With answer_format list: a bool column (OlympiadBench's is_multiple_answer); where it is true and the "
        "list holds one part, that part is split at its top-level commas into the parts ('$2, 3$' -> 2 and 3), "
        "since a multi-answer gold may be written as list items or inside one item; null = never split."))
    filter: RowFilter | None = Field(None, description=(
        "Read only the rows whose columns hold these values, e.g. {category: math} or {domain: [math, science]}; "
        "applied before `limit`; null = every row."))
    num_samples: int | None = Field(None, ge=1, description=(
        "Responses per question on this benchmark, in `generate` and the selection runs' evaluation (e.g. 16 on "
        "AIME, 4 on MATH-500); null = generate.num_samples. Not for data.train (teach's own num_samples)."))

    @field_validator("filter")
    @classmethod
    def _filter(cls, value: RowFilter | None) -> RowFilter | None:
        return check_filter(value)

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
        if self.distractor_fields and self.answer_format == "list":
            raise ValueError("answer_format 'list' does not go with distractor_fields (one right option)")
        if self.multiple_answer_field is not None and self.answer_format != "list":
            raise ValueError("multiple_answer_field needs answer_format: list")
        return self


class DataParams(Section):
    train: DatasetSpec = Field(description="Questions the teacher answers in `teach` (distillation data).")
    benchmarks: dict[str, DatasetSpec] = Field(description="Test benchmarks: name -> dataset.")

    @field_validator("benchmarks")
    @classmethod
    def _non_empty(cls, value: dict[str, DatasetSpec]) -> dict[str, DatasetSpec]:
        if not value:
            raise ValueError("at least one benchmark is required")
        for name in value:
            check_name("benchmark", name)
        return value

    @model_validator(mode="after")
    def _train_samples(self) -> "DataParams":
        if self.train.num_samples is not None:
            raise ValueError("train.num_samples: teach.num_samples and select.candidates.num_samples set the "
                             "responses per train question; remove it")
        return self


def _heads_divide(prefix: str, hidden: int, heads: int) -> None:
    if hidden % heads:
        raise ValueError(f"{prefix}hidden ({hidden}) must be a multiple of {prefix}heads ({heads})")


class ToyTraining(Section):
    """What every toy model's training shares: the batch, warmup, context and the build report's sampling budget."""

    batch_size: int = Field(16, ge=1, description="Training batch size (small: more updates).")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="Linear warmup share of training (cosine decay).")
    context: int = Field(512, ge=64, description="Max positions of the toy model(s) (room for teacher-style text).")
    eval_max_new_tokens: int = Field(160, ge=1, description="Token limit of the build report's accuracy sampling.")


class ToyParams(ToyTraining):
    """The embedded toy world: a synthetic arithmetic task and two tiny LMs trained from scratch.

    Per-model fields are ``<role>_<field>`` (role = teacher | student); a new toy model adds its
    own block of fields and a style in ``rdpt.toy``. Defaults build in ~4 minutes on 2 CPU cores.
    """

    seed: Seed = Field(0, description="Seed of the toy data, tokenizers, model init and training.")
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
    learning_rate: float = Field(3e-3, gt=0, description="Peak learning rate of both toy models.")

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> "ToyParams":
        for role in ("teacher", "student"):
            _heads_divide(f"{role}_", getattr(self, f"{role}_hidden"), getattr(self, f"{role}_heads"))
        return self


class ToyAltParams(ToyTraining):
    """A second, unrelated toy teacher for teacher identification (``rdpt/toy/alt.py``): GPT-2, its own
    sentence style, BPE and chat template, trained on the toy task but never distilled. ~2.5 min on 2 CPU cores."""

    seed: Seed = Field(0, description="Seed of its corpus, solutions, tokenizer, init and training.")
    corpus: int = Field(12000, ge=10, description="Worked 2-3 step solutions it is trained on (train combos only).")
    vocab: int = Field(400, ge=300, description="BPE vocabulary size of its tokenizer.")
    layers: int = Field(3, ge=1, description="Transformer blocks (GPT-2).")
    hidden: int = Field(128, ge=16, description="Hidden size.")
    heads: int = Field(4, ge=1, description="Attention heads (divide hidden).")
    steps: int = Field(1000, ge=1, description="Optimizer steps.")
    learning_rate: float = Field(2e-3, gt=0, description="Peak learning rate (cosine decay).")

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> "ToyAltParams":
        _heads_divide("", self.hidden, self.heads)
        return self


class RealWorldParams(Section):
    """The real-weights world (``configs/real-cpu.yaml``): one-step word problems for real pretrained models.

    The stage ``real_world`` writes the questions and references naming the cached real checkpoints
    (:mod:`rdpt.real_world`); it needs no asset itself, the loader checks them when a model loads.
    """

    n_train: int = Field(256, ge=1, description="Train questions (answered by the teacher in `teach`).")
    n_test: int = Field(48, ge=1, description="Test questions (benchmark one_step), none among the train ones.")
    seed: Seed = Field(0, description="Seed of the question generator.")

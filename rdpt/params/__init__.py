"""The one typed, validated params object.

Every stage reads ``params.yaml`` through :func:`load_params`; unknown keys (all of them, in one line),
wrong types (strict: ``"4"`` and ``true`` are not integers, ``"yes"`` is not a boolean), non-finite numbers
(``.inf``, ``.nan``), duplicate YAML keys, names that become file names but are not plain names, and
out-of-range values are rejected up front with a one-line error that names the key::

    python -c "from rdpt.params import load_params; print(load_params('params.yaml').classify)"
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from rdpt import RdptError
from rdpt.params.base import (  # noqa: F401 - the params API is imported from rdpt.params
    Section,
    Seed,
)
from rdpt.params.engines import (  # noqa: F401 - the params API is imported from rdpt.params
    LaunchParams,
    ServerParams,
    VllmParams,
)
from rdpt.params.inputs import (  # noqa: F401 - the params API is imported from rdpt.params
    DataParams,
    DatasetSpec,
    ModelsParams,
    ModelSpec,
    RealWorldParams,
    ToyAltParams,
    ToyParams,
)
from rdpt.params.stages import (  # noqa: F401 - the params API is imported from rdpt.params
    CandidateDataset,
    CandidatesParams,
    ChatColumn,
    ClassifyParams,
    CorrelateParams,
    Engine,
    IdentifyParams,
    LrScheduler,
    SamplingParams,
    ScoreAggregate,
    ScoreParams,
    SegmentParams,
    SelectParams,
    TeachParams,
    TrainParams,
)


class Params(Section):
    seed: Seed = Field(0, description="Global seed (sampling, training, shuffling); 0 <= seed < 2**32.")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights dtype; auto = bfloat16 on CUDA, float32 on CPU."
    )
    # The folder of the world stage the models and data come from: teach/generate/score depend on it in dvc.yaml,
    # so `dvc repro` of a real preset does not build the toy world (a fixed choice: it becomes a DVC dep path).
    world: Literal["data/toy", "data/real"] = Field(
        "data/toy", description="World stage output the pipeline depends on: data/toy (toy_world) or data/real "
        "(real_world; configs/real-cpu.yaml). Hub-id presets keep data/toy.")
    models: ModelsParams
    data: DataParams
    toy: ToyParams = ToyParams()
    real: RealWorldParams = RealWorldParams()
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

    @model_validator(mode="after")
    def _greedy_select_eval(self) -> "Params":
        # checked here, where generate's k and the benchmarks' own are known: at run time it would be a traceback
        ev = self.select.eval
        temperature = self.generate.temperature if ev.temperature is None else ev.temperature
        for name, spec in self.data.benchmarks.items():
            k = ev.num_samples or getattr(spec, "num_samples", None) or self.generate.num_samples
            if temperature == 0 and k != 1:
                raise ValueError(f"select.eval: temperature 0 is greedy decoding, so benchmark {name!r} needs "
                                 f"num_samples 1 (it would draw {k}): set select.eval.num_samples: 1")
        return self


def _loc(loc: tuple) -> str:
    """``a.b.c``; a key that is not a plain word (empty, spaces, a newline) is quoted, so the line stays one line."""
    return ".".join(p if isinstance(p, str) and re.fullmatch(r"[\w@\[\]-]+", p) else repr(p) for p in loc) or "<root>"


def _format_error(source: str, err: ValidationError) -> str:
    errors = err.errors()
    unknown = [_loc(e["loc"]) for e in errors if e["type"] == "extra_forbidden"]
    if len(unknown) > 1:  # every typo at once, not one per run
        rest = len(errors) - len(unknown)
        text = f"{source}: unknown keys: {', '.join(unknown)}" + (f" (+{rest} more error(s))" if rest else "")
    else:
        first = errors[0]
        msg = first["msg"]
        if first["type"] == "extra_forbidden":
            msg = "unknown key"
        elif "input" in first and not isinstance(first["input"], dict):
            msg = f"{msg} (got {_short(first['input'])})"
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        text = f"{source}: {_loc(first['loc'])}: {msg}{more}"
    return " ".join(text.splitlines())


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def parse_params(data: dict[str, Any], source: str = "params") -> Params:
    if not isinstance(data, dict):
        raise RdptError(f"{source}: expected a mapping at the top level")
    try:
        return Params.model_validate(data)
    except ValidationError as err:
        raise RdptError(_format_error(source, err)) from None


# ---------------------------------------------------------------------------------------------- YAML
class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (the later would silently replace the earlier) and reads
    ``1e-3`` as a float, as YAML 1.2 and DVC do (PyYAML's YAML 1.1 needs ``1.0e-3``; strict params would then
    see a string)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    if key in seen:
                        raise _DuplicateKey(key, key_node.start_mark.line + 1, seen[key])
                    seen[key] = key_node.start_mark.line + 1
                except TypeError:  # an unhashable key: SafeLoader reports it
                    pass
        return super().construct_mapping(node, deep=deep)


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, line: int, first: int):
        super().__init__(f"line {line}: duplicate key {key!r} (first at line {first})")


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def parse_yaml(text: str, source: str) -> Any:
    """The data of a YAML document (the one YAML reader of rdpt); bad YAML or a duplicate key is a one-line
    :class:`RdptError` starting with ``source`` and naming the line."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as err:
        raise RdptError(f"{source}: {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise RdptError(f"{source}: not valid YAML ({where}{problem})") from None


def read_text(path: str | Path, what: str = "file") -> str:
    """A text file's contents; missing, unreadable or non-UTF-8 is a one-line RdptError naming it."""
    path = Path(path)
    if not path.is_file():
        raise RdptError(f"{path}: {what} not found")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise RdptError(f"{path}: line {line}: not UTF-8 text (byte 0x{err.object[err.start]:02x})") from None
    except OSError as err:
        raise RdptError(f"{path}: cannot read ({err.strerror or err})") from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML file's top-level mapping; a missing file, bad YAML, a duplicate key or a non-mapping is a
    one-line error."""
    path = Path(path)
    data = parse_yaml(read_text(path, "params file"), str(path))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RdptError(f"{path}: expected a mapping at the top level")
    return data


def load_params(path: str | Path = "params.yaml") -> Params:
    """The params file, parsed and validated; with ``RDPT_PARAMS_TRACE`` set, a view that records the keys read
    (:mod:`rdpt.params.trace`, how dvc.yaml is held to the code)."""
    params = parse_params(read_yaml(path), str(path))
    if os.environ.get("RDPT_PARAMS_TRACE"):
        from rdpt.params.trace import trace

        return trace(params)  # type: ignore[return-value]
    return params

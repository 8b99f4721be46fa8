"""Paper presets: short params files in ``configs/`` merged onto the defaults, validated like ``params.yaml``.

A preset names only what differs from the defaults (models, benchmarks, sampling), so it stays short and
picks up new default keys instead of going stale. Applying one writes the merged, validated params file;
DVC then runs it as an experiment::

    python -m rdpt.presets apply configs/r1-distill-qwen-7b.yaml && dvc exp run -n r1-distill-qwen-7b

(``dvc exp run -S`` sets single keys only; it takes no params file.) Merge rules: mappings merge key by key,
everything else (scalars, lists, null) replaces the default, and the mappings in :data:`REPLACED` (the
benchmark set, the candidate teachers) are replaced whole: a preset's benchmarks are *the* benchmarks, not
added to the toy ones.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import click
import yaml

from rdpt import RdptError
from rdpt.params import Params, parse_params, read_yaml

# Mappings a preset replaces as a whole instead of merging into (their keys are names the user chooses).
REPLACED = {("data", "benchmarks"), ("identify", "candidates")}

PRESET_DIR = Path("configs")
_MARK = "# rdpt-preset: "  # first line of an applied file: which preset made it


def merge(defaults: dict[str, Any], preset: dict[str, Any], _at: tuple[str, ...] = ()) -> dict[str, Any]:
    """``defaults`` with ``preset`` laid over it (see the module docstring); neither input is modified."""
    out = copy.deepcopy(defaults)
    for key, value in preset.items():
        at = (*_at, str(key))
        if isinstance(value, dict) and isinstance(out.get(key), dict) and at not in REPLACED:
            out[key] = merge(out[key], value, at)
        else:
            out[key] = copy.deepcopy(value)
    return out


def applied_preset(path: str | Path) -> str | None:
    """The preset a params file was made from (its first line), or None for a hand-written file."""
    first = Path(path).read_text().split("\n", 1)[0] if Path(path).is_file() else ""
    return first[len(_MARK):].strip() if first.startswith(_MARK) else None


def _refuse_stacking(preset: str | Path, base: str | Path) -> None:
    previous = applied_preset(base)
    if previous is not None and Path(previous).resolve() != Path(preset).resolve():
        raise RdptError(
            f"{base}: already made from preset {previous}; restore the defaults first (git checkout {base}) "
            "or pass --base with the defaults file"
        )


def compose(preset: str | Path, base: str | Path = "params.yaml") -> tuple[dict[str, Any], Params]:
    """The merged params (as data and validated) of ``preset`` over ``base``; errors name the preset file."""
    merged = merge(read_yaml(base), read_yaml(preset))
    return merged, parse_params(merged, f"{preset} (over {base})")


def apply(preset: str | Path, base: str | Path = "params.yaml", out: str | Path | None = None) -> Params:
    """Write ``preset`` merged over ``base`` to ``out`` (default: ``base``) atomically, once validated.

    A file made from another preset is refused as a base: its keys would leak into this one. Restore the
    defaults first (``git checkout params.yaml``); re-applying the same preset is fine.
    """
    from rdpt.io.artifacts import atomic_path

    out = Path(base if out is None else out)
    _refuse_stacking(preset, base)
    merged, params = compose(preset, base)
    header = (
        f"{_MARK}{preset}\n"
        f"# Written by `python -m rdpt.presets apply {preset}`: {base} with the preset laid over it.\n"
        "# Edit the preset (or use `dvc exp run -S key=value`), not this file; see README 'Paper presets'.\n"
    )
    body = yaml.safe_dump(merged, sort_keys=False, allow_unicode=True, width=120, default_flow_style=False)
    with atomic_path(out) as tmp:
        tmp.write_text(header + body)
    return params


def presets(folder: str | Path = PRESET_DIR) -> list[Path]:
    """Every preset file in ``folder``, sorted."""
    return sorted(Path(folder).glob("*.yaml"))


@click.group()
def main():
    """Paper presets (configs/*.yaml): validate them or write one over the defaults into params.yaml."""


@main.command("apply")
@click.argument("preset", type=click.Path(dir_okay=False))
@click.option("--base", default="params.yaml", show_default=True, help="Defaults the preset is laid over.")
@click.option("--out", default=None, help="File to write (default: the --base file).")
def apply_cmd(preset, base, out):
    """Merge PRESET over the defaults, validate, and write the params file DVC runs."""
    from rdpt.cli import stage

    params = stage(apply)(preset, base, out)
    click.echo(
        f"{out or base}: preset {preset} applied (teacher {params.models.teacher.path}, student "
        f"{params.models.student.path}, distilled {params.models.distilled.path or 'trained here'}; "
        f"benchmarks {', '.join(params.data.benchmarks)})"
    )


@main.command("check")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--base", default="params.yaml", show_default=True, help="Defaults the presets are laid over.")
def check_cmd(files, base):
    """Validate FILES (default: every configs/*.yaml) over the defaults without writing anything."""
    from rdpt.cli import stage

    def check_all():
        for file in files or presets():
            _refuse_stacking(file, base)
            compose(file, base)
            click.echo(f"{file}: ok")

    stage(check_all)()


if __name__ == "__main__":
    main()

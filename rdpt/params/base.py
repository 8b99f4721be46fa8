"""The building blocks of every params section: strict, frozen, no unknown keys; plain names; seeds."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field


class Section(BaseModel):
    # extra="forbid": a typo in params.yaml is an error, never a silently ignored key. strict: no coercion
    # ("4" -> 4, true -> 1, "yes" -> True); allow_inf_nan=False: .inf/.nan are never a valid setting.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


# Seeds feed numpy (which takes 0 <= seed < 2**32), torch and Python's random: one range for all.
Seed = Annotated[int, Field(ge=0, lt=2**32)]

# A name from params that becomes part of a file or folder name (benchmarks: position_curves_<name>.png,
# viewer/<name>.html, response ids <name>/<question>/<k>): a plain name, never a path.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")


def check_name(kind: str, name: Any) -> str:
    """``name`` if it is a plain name (letters, digits, _ and -; not starting with _ or -), else ValueError."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"{kind} name {name!r}: use letters, digits, _ and - (up to 100, starting with a letter "
                         "or digit): it becomes part of file names")
    return name

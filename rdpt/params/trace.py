"""Which params keys a stage reads: a recording view of the params object, for holding dvc.yaml to the code.

With ``RDPT_PARAMS_TRACE=<folder>`` set, :func:`rdpt.params.load_params` returns a :class:`Traced` view; every
key the stage reads is recorded and written at exit to ``<folder>/<pid>.json`` with the stage's command line.
``tests/test_pipeline_e2e.py`` runs ``dvc repro`` this way and checks each key against the stage's ``params``
in dvc.yaml (a key read but not listed would let DVC serve a stale result)::

    RDPT_PARAMS_TRACE=/tmp/trace python stages/segment.py --generations g.jsonl --out s.parquet --empty-out e.parquet
"""

from __future__ import annotations

import atexit
import json
import os
import sys
from pathlib import Path

from pydantic import BaseModel

ENV = "RDPT_PARAMS_TRACE"


class Traced:
    """Attribute access on a params section, recorded as dotted keys (``classify.beta``).

    Reading a value records its full key; a sub-section is returned traced; a method (``model_dump``) or a
    dict (``data.benchmarks``) records the whole section, since it may read any part of it.
    """

    def __init__(self, obj: BaseModel, prefix: str, seen: set[str]):
        object.__setattr__(self, "_obj", obj)
        object.__setattr__(self, "_prefix", prefix)
        object.__setattr__(self, "_seen", seen)

    def __getattr__(self, name: str):
        obj, prefix, seen = self._obj, self._prefix, self._seen
        value = getattr(obj, name)
        key = f"{prefix}{name}"
        if name in type(obj).model_fields:
            if isinstance(value, BaseModel):
                return Traced(value, key + ".", seen)
            if isinstance(value, dict):
                return TracedDict(value, key, seen)
            seen.add(key)
            return value
        seen.add(prefix.rstrip(".") or "*")  # a method or property: the whole section
        return value

    def __setattr__(self, name, value):
        raise AttributeError("params are read-only")

    def __eq__(self, other):
        self._seen.add(self._prefix.rstrip(".") or "*")
        return self._obj == (other._obj if isinstance(other, Traced) else other)

    def __hash__(self):
        return hash(self._obj)

    def __repr__(self) -> str:
        return f"Traced({self._obj!r})"


class TracedDict(dict):
    """A dict-valued section (``data.benchmarks``): one entry read by name records that entry only; anything
    that sees every entry (iteration, ``items()``, ``len``) records the whole section."""

    def __init__(self, value: dict, key: str, seen: set[str]):
        super().__init__(value)
        self._key, self._seen = key, seen

    def _entry(self, name):
        self._seen.add(f"{self._key}.{name}")
        value = dict.__getitem__(self, name)
        return Traced(value, f"{self._key}.{name}.", self._seen) if isinstance(value, BaseModel) else value

    def __getitem__(self, name):
        return self._entry(name)

    def get(self, name, default=None):
        return self._entry(name) if dict.__contains__(self, name) else default

    def __contains__(self, name):
        self._seen.add(f"{self._key}.{name}")
        return dict.__contains__(self, name)

    def _whole(self):
        self._seen.add(self._key)

    def __iter__(self):
        self._whole()
        return dict.__iter__(self)

    def __len__(self):
        self._whole()
        return dict.__len__(self)

    def items(self):
        self._whole()
        return dict.items(self)

    def keys(self):
        self._whole()
        return dict.keys(self)

    def values(self):
        self._whole()
        return dict.values(self)


def trace(params: BaseModel) -> Traced:
    """A recording view of ``params``; the keys read are written to ``$RDPT_PARAMS_TRACE`` when the process exits."""
    seen: set[str] = set()
    folder = Path(os.environ[ENV])

    def dump() -> None:
        folder.mkdir(parents=True, exist_ok=True)
        record = {"argv": sys.argv, "keys": sorted(seen)}
        (folder / f"{os.getpid()}.json").write_text(json.dumps(record, indent=1) + "\n")

    atexit.register(dump)
    return Traced(params, "", seen)

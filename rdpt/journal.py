"""Resumable stages: finished work is journaled, so a killed stage continues where it stopped.

``teach``, ``generate@*`` and ``score@*`` run for minutes to days on real models. Each appends one
JSON line per finished batch to a journal (flushed and fsynced before the next batch starts). When
the stage runs again with the same inputs, it loads the journal, checks every record, skips those
batches, computes only the rest and assembles the artifact in the canonical order, so a resumed
run writes the same bytes as an uninterrupted one. The journal is deleted once the artifact is in
place::

    python -c "from rdpt.journal import journal_root; print(journal_root())"

Why outside the stage's outs: ``dvc repro`` deletes a stage's outs before it runs (unless they are
``persist: true``, which would also keep stale results across param changes), so progress written
there would be lost. The journal lives in ``.rdpt/journal/<slot>--<key>/`` instead (``--journal-dir``
or ``RDPT_JOURNAL_DIR`` move it), ignored by git and DVC. ``key`` hashes everything that determines
the result — the params the stage reads, the model (files, revision, template), the input rows, the
code of the modules that compute it, the torch/transformers versions, device and dtype — so a
journal is only ever resumed by a run that would compute the very same records; when any of them
changes, the key changes and the stale journal of that slot is deleted.

A SIGKILL can tear the last line; a line that does not parse or fails the caller's check ends the
valid prefix, and the file is truncated there. Only one process may write a journal (a lock).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from rdpt import RdptError

log = logging.getLogger(__name__)

DEFAULT_ROOT = ".rdpt/journal"
ENV_ROOT = "RDPT_JOURNAL_DIR"
# Files up to this size are hashed; bigger ones (model weights) are fingerprinted by size + mtime,
# which changes whenever the file is rewritten, without reading gigabytes at every stage start.
HASH_LIMIT = 64 * 2**20


def journal_root(root: str | Path | None = None) -> Path:
    """``root``, else ``$RDPT_JOURNAL_DIR``, else ``.rdpt/journal`` (relative to the working directory)."""
    return Path(root or os.environ.get(ENV_ROOT) or DEFAULT_ROOT)


def digest(obj: Any) -> str:
    """sha256 of a JSON-able object (keys sorted), hex."""
    text = json.dumps(obj, sort_keys=True, ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def folder_fingerprint(folder: str | Path) -> list:
    """(relative path, size, sha256 or mtime) of every file under ``folder``, sorted."""
    folder = Path(folder)
    out = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = path.stat()
        mark = file_digest(path) if stat.st_size <= HASH_LIMIT else f"mtime:{stat.st_mtime_ns}"
        out.append([path.relative_to(folder).as_posix(), stat.st_size, mark])
    return out


def model_fingerprint(path: str, revision: str | None, chat_template: str | None) -> dict:
    """What identifies a loaded model: its files when local, else hub id + revision + cached snapshot."""
    local = Path(path).expanduser()
    if local.is_dir():
        return {"files": folder_fingerprint(local), "chat_template": chat_template}
    snapshot = None
    try:  # the commit the local hub cache resolved to (offline, cheap); None when unknown
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(path, "config.json", revision=revision)
        if isinstance(found, str):
            snapshot = Path(found).parent.name
    except Exception:  # noqa: BLE001 - a fingerprint without the snapshot is still correct, only coarser
        pass
    return {"hub": path, "revision": revision, "snapshot": snapshot, "chat_template": chat_template}


def code_fingerprint(modules: Iterable) -> dict:
    """sha256 of the source of each module (a bug fix must not be mixed with results computed before it)."""
    import torch
    import transformers

    out = {"torch": torch.__version__, "transformers": transformers.__version__}
    for module in modules:
        out[module.__name__] = file_digest(module.__file__)
    return out


class Journal:
    """Append-only record of the finished work units of one stage run.

    ``slot`` names the stage and output (e.g. ``score-teacher``); ``fingerprint`` is everything the
    results depend on. Use as a context manager: ``done`` holds the valid records loaded from an
    interrupted run (unit -> data), :meth:`append` adds one durably, :meth:`complete` deletes the
    journal after the artifact was written. Leaving the block by an exception keeps the journal.
    """

    def __init__(self, root: str | Path | None, slot: str, fingerprint: dict,
                 valid: Callable[[str, Any], bool] | None = None):
        if "--" in slot or "/" in slot:
            raise ValueError(f"journal slot {slot!r} may not contain '--' or '/'")
        self.root = journal_root(root)
        self.slot = slot
        self.key = digest(fingerprint)[:20]
        self.dir = self.root / f"{slot}--{self.key}"
        self.path = self.dir / "units.jsonl"
        self.fingerprint = fingerprint
        self.valid = valid or (lambda unit, data: True)
        self.done: dict[str, Any] = {}
        self.n_resumed = 0
        self._fh = None

    # -------------------------------------------------------------------------------- lifecycle
    def __enter__(self) -> "Journal":
        self._drop_stale()
        self.dir.mkdir(parents=True, exist_ok=True)
        meta = self.dir / "fingerprint.json"
        if not meta.exists():  # for a human wondering what this folder is
            meta.write_text(json.dumps(self.fingerprint, indent=1, sort_keys=True, default=str) + "\n")
        self._fh = open(self.path, "a+b")
        try:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._fh.close()
            self._fh = None
            raise RdptError(f"{self.path}: another process is running this stage (journal locked)") from None
        self._load()
        self.n_resumed = len(self.done)
        if self.n_resumed:
            log.info("%s: resuming, %d finished unit(s) in %s", self.slot, self.n_resumed, self.dir)
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()  # also releases the lock
            self._fh = None

    def complete(self) -> None:
        """The artifact is written: the journal has served its purpose."""
        self.close()
        n = len(self.done)
        log.info("%s: %d unit(s): %d from the journal, %d computed", self.slot, n, self.n_resumed, n - self.n_resumed)
        shutil.rmtree(self.dir, ignore_errors=True)

    # ---------------------------------------------------------------------------------- records
    def append(self, unit: str, data: Any) -> Any:
        """Record a finished unit durably; returns the data as read back (what a resumed run sees)."""
        if self._fh is None:
            raise RuntimeError("journal is not open")
        if unit in self.done:
            raise RuntimeError(f"journal unit {unit!r} recorded twice")
        line = json.dumps({"unit": unit, "data": data}, ensure_ascii=False) + "\n"
        self._fh.write(line.encode("utf-8"))
        self._fh.flush()
        os.fsync(self._fh.fileno())
        # The parsed copy: a fresh and a resumed run then assemble the artifact from equal objects.
        self.done[unit] = json.loads(line)["data"]
        return self.done[unit]

    def _load(self) -> None:
        self._fh.seek(0)
        raw = self._fh.read()
        good = 0  # bytes of the valid prefix
        for line in raw.splitlines(keepends=True):
            try:
                if not line.endswith(b"\n"):
                    raise ValueError("torn line")
                record = json.loads(line)
                unit, data = record["unit"], record["data"]
                if unit in self.done or not self.valid(unit, data):
                    raise ValueError(f"unit {unit!r} is duplicated or does not match the inputs")
            except (ValueError, KeyError, TypeError, AttributeError, IndexError) as err:
                log.warning("%s: dropping the journal from byte %d on (%s)", self.path, good, err)
                break
            self.done[unit] = data
            good += len(line)
        if good < len(raw):
            self._fh.truncate(good)
            self._fh.flush()
            os.fsync(self._fh.fileno())
        self._fh.seek(0, os.SEEK_END)

    def _drop_stale(self) -> None:
        """Journals of this slot with another key can never be resumed by this run's inputs."""
        if not self.root.is_dir():
            return
        for other in self.root.glob(f"{self.slot}--*"):
            if other == self.dir or other.name.rpartition("--")[0] != self.slot:
                continue
            try:
                with open(other / "units.jsonl", "ab") as fh:  # never pull one from under a live run
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            except OSError:
                pass
            log.info("%s: removing a journal of other inputs (%s)", self.slot, other)
            shutil.rmtree(other, ignore_errors=True)

"""Resumable stages: finished work is journaled, so a killed stage continues where it stopped.

``teach``, ``generate@*`` and ``score@*`` run for minutes to days on real models. Each appends one
JSON line per finished batch to a journal (flushed and fsynced before the next batch starts). When
the stage runs again with the same inputs, it loads the journal, checks every record, skips those
batches, computes only the rest and assembles the artifact in the canonical order, so a resumed
run writes the same bytes as an uninterrupted one. The journal is deleted once the artifact is in
place::

    python -c "from rdpt.io.journal import journal_root; print(journal_root())"

Why outside the stage's outs: ``dvc repro`` deletes a stage's outs before it runs (unless they are
``persist: true``, which would also keep stale results across param changes), so progress written
there would be lost. The journal lives in ``.rdpt/journal/<slot>--<key>/`` instead (``--journal-dir``
or ``RDPT_JOURNAL_DIR`` move it), ignored by git and DVC. ``key`` hashes everything that determines
the result — the params the stage reads, the model (files, revision, template), the input rows, the
code of the modules that compute it, the torch/transformers versions, device and dtype — so a
journal is only ever resumed by a run that would compute the very same records; when any of them
changes, the key changes and the stale journal of that slot is deleted.

A journal's contents are not trusted: every line is checked before its record is reused. A line holds
``{"unit", "data", "sha256"}``, the checksum being the sha256 of the canonical JSON of unit and data
(:func:`record_checksum`), so a torn, bit-flipped or hand-edited line is caught; a JSON object with a key
twice is refused; the record's data must have the shape of what the stage writes (:func:`check_record`:
sampled batches and score batches must hold their keys with the right types and ranges, e.g. ``n_tokens`` equal
to the number of token ids, a sentence's log-probability <= 0 over ``n_tokens >= 0`` tokens, and no
response is recorded twice, within a record or across records); and the caller's ``valid(unit, data)``
hook checks it against this run's inputs (its plan, its responses). The first line that fails any check
ends the valid prefix: it and everything after it are dropped (one warning) and recomputed, and the file
is truncated there. A SIGKILL tearing the last line is the common case. The checksum detects damage, not
a forger who recomputes it: whoever can write the journal folder can write the outputs too (see
docs/security.md). Only one process may write a journal (a lock).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import math
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from rdpt import RdptError
from rdpt.io.artifacts import file_digest

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


def run_fingerprint(params, stage: str, name: str, ref, engine: str, modules: Iterable, **inputs) -> dict:
    """Everything a journaled stage's records depend on (the journal key): model, engine and where it runs.

    ``ref`` is the :class:`rdpt.models.ModelRef` the stage runs; its server URL is part of the key, so two
    servers (two models, possibly) never share a journal. ``inputs`` are the stage's own params and rows.
    """
    from rdpt.models import resolve_device

    device, dtype = resolve_device(params.device, params.dtype)
    return {"stage": stage, "role": name, "model": model_fingerprint(ref.path, ref.revision, ref.chat_template),
            "gguf_file": ref.gguf_file, "server": ref.server, "engine": engine, "device": device.type,
            "dtype": str(dtype), "code": code_fingerprint(modules), **_prompt_and_config(ref), **inputs}


def _prompt_and_config(ref) -> dict:
    """The model's prompt settings and config overrides (models.<role>), when any is set: part of the key."""
    fields = {"system_prompt": getattr(ref, "system_prompt", None),
              "chat_template_kwargs": getattr(ref, "chat_template_kwargs", None),
              "config_overrides": getattr(ref, "config_overrides", None)}
    if getattr(ref, "think", "auto") != "auto":
        fields["think"] = ref.think
    return {k: v for k, v in fields.items() if v is not None}


def record_checksum(unit: str, data: Any) -> str:
    """sha256 of the canonical JSON of a record (keys sorted, ASCII, no spaces), hex."""
    text = json.dumps({"unit": unit, "data": data}, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _no_duplicate_keys(pairs: list) -> dict:
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} twice in one object")
        out[key] = value
    return out


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_samples(data: dict) -> None:
    """A sampled batch: ``{"prompts": [prompt index], "samples": [[response] per prompt]}``."""
    if not {"prompts", "samples"} <= set(data):
        raise ValueError(f"a sample record has keys {sorted(data)}: prompts and samples are required")
    prompts, samples = data["prompts"], data["samples"]
    if not isinstance(prompts, list) or not all(_is_int(i) and i >= 0 for i in prompts):
        raise ValueError("prompts: expected a list of prompt indices >= 0")
    if len(set(prompts)) != len(prompts):
        raise ValueError("prompts: a prompt twice")
    if not isinstance(samples, list) or len(samples) != len(prompts):
        raise ValueError("samples: expected one list per prompt")
    for per_prompt in samples:
        if not isinstance(per_prompt, list) or not per_prompt:
            raise ValueError("samples: expected a non-empty list of responses per prompt")
        for r in per_prompt:
            if not isinstance(r, dict) or not {"text", "finish_reason", "n_tokens", "token_ids"} <= set(r):
                raise ValueError("a response must have text, finish_reason, n_tokens and token_ids")
            if not isinstance(r["text"], str) or r["finish_reason"] not in ("stop", "length"):
                raise ValueError("a response's text must be a string and finish_reason stop or length")
            ids = r["token_ids"]
            if not isinstance(ids, list) or not all(_is_int(t) and t >= 0 for t in ids):
                raise ValueError("token_ids: expected a list of token ids >= 0")
            if not _is_int(r["n_tokens"]) or r["n_tokens"] != len(ids):
                raise ValueError(f"n_tokens {r['n_tokens']!r} is not the number of token_ids ({len(ids)})")


def _check_scores(data: dict) -> None:
    """A scored batch: ``{"keys": [response id], "scores": [[[sum_logprob, n_tokens(, sum_rank)(, first_logprob,
    min_window_logprob)]] per key], "stats": {name: number}}`` (stats optional)."""
    if not {"keys", "scores"} <= set(data):
        raise ValueError(f"a score record has keys {sorted(data)}: keys and scores are required")
    keys, scores = data["keys"], data["scores"]
    stats = data.get("stats", {})
    if not isinstance(stats, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
            for v in stats.values()):
        raise ValueError("stats: expected finite numbers >= 0")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise ValueError("keys: expected a list of response ids")
    if len(set(keys)) != len(keys):
        raise ValueError("keys: a response twice in one record")
    if not isinstance(scores, list) or len(scores) != len(keys):
        raise ValueError("scores: expected one list per key")
    for key, per_sentence in zip(keys, scores):
        if not isinstance(per_sentence, list):
            raise ValueError(f"scores of {key!r}: expected a list per sentence")
        for entry in per_sentence:
            if not isinstance(entry, list) or len(entry) not in (2, 3, 4, 5):
                raise ValueError(f"scores of {key!r}: expected [sum_logprob, n_tokens(, sum_rank)(, first_logprob, "
                                 "min_window_logprob)]")
            total, n, rank = entry[0], entry[1], entry[2] if len(entry) in (3, 5) else 0
            for extra in entry[-2:] if len(entry) >= 4 else []:  # the score variants' statistics
                if isinstance(extra, bool) or not isinstance(extra, (int, float)) or not math.isfinite(extra):
                    raise ValueError(f"scores of {key!r}: score-variant statistic {extra!r} is not a finite number")
            if isinstance(total, bool) or not isinstance(total, (int, float)) or math.isnan(total):
                raise ValueError(f"scores of {key!r}: sum_logprob {total!r} is not a number")
            if not _is_int(n) or n < 0 or not _is_int(rank) or rank < 0:
                raise ValueError(f"scores of {key!r}: n_tokens {n!r} / sum_rank {rank!r} must be integers >= 0")
            if total > 1e-3 * max(n, 1) or (n == 0 and (total != 0 or rank != 0)):
                raise ValueError(f"scores of {key!r}: sum_logprob {total!r} over {n} token(s) is not a log-probability")


def check_record(data: Any) -> str | None:
    """Check ``data`` against the shape of the records rdpt's stages journal (sampled batches, score batches),
    recognised by their keys; raises ValueError naming the problem. Returns the key of the items it holds
    ("prompts" or "keys"), whose members must not repeat across records; None for any other record."""
    if isinstance(data, dict) and ("samples" in data or "prompts" in data):
        _check_samples(data)
        return "prompts"
    if isinstance(data, dict) and ("scores" in data or "keys" in data):
        _check_scores(data)
        return "keys"
    return None


TARGET_FILE = "target.txt"


def prune_orphans(root: str | Path | None = None) -> list[Path]:
    """Delete journals whose artifact appeared after their last record; returns the folders deleted.

    DVC deletes a stage's outputs before it runs it, so an artifact newer than its journal was not built from
    it: DVC restored it from its run cache (the stage was killed once, then its result came from the cache) or
    another run wrote it. Such a journal would never be completed, nor deleted. A journal in use (locked) stays.
    """
    root = journal_root(root)
    gone = []
    for folder in sorted(root.glob("*--*")) if root.is_dir() else []:
        target_file, units = folder / TARGET_FILE, folder / "units.jsonl"
        if not target_file.is_file():
            continue
        target = Path(target_file.read_text().strip())
        last = (units if units.exists() else target_file).stat().st_mtime
        if not target.exists() or target.stat().st_mtime <= last:
            continue
        with open(units if units.exists() else target_file, "rb") as fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a stage is running on it right now
            shutil.rmtree(folder, ignore_errors=True)
        log.info("journal %s: its artifact %s is newer (restored from DVC's cache?): deleted", folder.name, target)
        gone.append(folder)
    return gone


class Journal:
    """Append-only record of the finished work units of one stage run.

    ``slot`` names the stage and output (e.g. ``score-teacher``); ``fingerprint`` is everything the
    results depend on. Use as a context manager: ``done`` holds the valid records loaded from an
    interrupted run (unit -> data), :meth:`append` adds one durably, :meth:`complete` deletes the
    journal after the artifact was written. Leaving the block by an exception keeps the journal.
    """

    def __init__(self, root: str | Path | None, slot: str, fingerprint: dict,
                 valid: Callable[[str, Any], bool] | None = None, target: str | Path | None = None):
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
        self.target = None if target is None else Path(target)  # the artifact this journal builds
        self._fh = None

    # -------------------------------------------------------------------------------- lifecycle
    def __enter__(self) -> "Journal":
        self._drop_stale()
        self.dir.mkdir(parents=True, exist_ok=True)
        meta = self.dir / "fingerprint.json"
        if not meta.exists():  # for a human wondering what this folder is
            meta.write_text(json.dumps(self.fingerprint, indent=1, sort_keys=True, default=str) + "\n")
        if self.target is not None:  # lets prune_orphans tell a journal whose artifact came from elsewhere
            (self.dir / TARGET_FILE).write_text(str(self.target.absolute()) + "\n")
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
        # The parsed copy: a fresh and a resumed run then assemble the artifact from equal objects.
        parsed = json.loads(json.dumps(data, ensure_ascii=False))
        record = {"unit": unit, "data": parsed, "sha256": record_checksum(unit, parsed)}
        line = json.dumps(record, ensure_ascii=False) + "\n"
        self._fh.write(line.encode("utf-8"))
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.done[unit] = parsed
        return parsed

    def _load(self) -> None:
        self._fh.seek(0)
        raw = self._fh.read()
        good = 0  # bytes of the valid prefix
        lines = raw.splitlines(keepends=True)
        seen: dict[tuple[str, str], set] = {}  # (unit prefix, "prompts" | "keys") -> items recorded so far
        for n, line in enumerate(lines):
            try:
                unit, data, items = self._check_line(line, seen)
            except Exception as err:  # noqa: BLE001 - a record that fails any check (or breaks the hook) is redone
                log.warning("%s: line %d fails its check (%s): dropping it and the %d line(s) after it; they are "
                            "recomputed", self.path, n + 1, err, len(lines) - n - 1)
                break
            if items is not None:
                seen.setdefault(items[0], set()).update(items[1])
            self.done[unit] = data
            good += len(line)
        if good < len(raw):
            self._fh.truncate(good)
            self._fh.flush()
            os.fsync(self._fh.fileno())
        self._fh.seek(0, os.SEEK_END)

    def _check_line(self, line: bytes, seen: dict) -> tuple[str, Any, tuple | None]:
        """(unit, data, (scope, items)) of one journal line, every check passed; else an exception."""
        if not line.endswith(b"\n"):
            raise ValueError("torn line")
        record = json.loads(line, object_pairs_hook=_no_duplicate_keys)
        if not isinstance(record, dict) or set(record) != {"unit", "data", "sha256"}:
            raise ValueError("not a {unit, data, sha256} record")
        unit, data = record["unit"], record["data"]
        if not isinstance(unit, str):
            raise ValueError("unit is not a string")
        if record["sha256"] != record_checksum(unit, data):
            raise ValueError(f"unit {unit!r}: checksum mismatch")
        if unit in self.done:
            raise ValueError(f"unit {unit!r} recorded twice")
        field = check_record(data)
        items = None
        if field is not None:
            scope = (unit.rpartition("/")[0], field)
            members = data[field]
            if seen.get(scope, set()) & set(members):
                raise ValueError(f"unit {unit!r}: {field} already recorded by an earlier unit")
            items = (scope, members)
        if not self.valid(unit, data):
            raise ValueError(f"unit {unit!r} does not match this run's inputs")
        return unit, data, items

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

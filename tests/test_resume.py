"""Interrupted stages resume: the journal, resumed sampling and scoring, and a real SIGKILL of a stage.

    python -m pytest tests/test_resume.py -q            # the SIGKILL tests are `slow`
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from rdpt import RdptError
from rdpt.io.journal import Journal, model_fingerprint
from rdpt.params import parse_params

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = "{% for m in messages %}Q: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}A: {% endif %}"
CORPUS = [f"Ana has {i} pens. She gets {i + 2} more. So {i} + {i + 2} = {2 * i + 2}. \\boxed{{{2 * i + 2}}}"
          for i in range(60)]


# ------------------------------------------------------------------------------------------ journal
def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_journal_keeps_the_valid_prefix_and_truncates_a_torn_tail(tmp_path):
    with Journal(tmp_path, "stage", {"a": 1}) as j:
        for i in range(3):
            j.append(str(i), {"value": i, "text": "é🙂\x00"})
    # A SIGKILL during a write leaves a line without its newline.
    with open(j.path, "ab") as fh:
        fh.write(b'{"unit": "3", "data": {"val')
    with Journal(tmp_path, "stage", {"a": 1}) as j2:
        assert j2.done == {str(i): {"value": i, "text": "é🙂\x00"} for i in range(3)}
        assert j2.n_resumed == 3 and len(_lines(j2.path)) == 3  # the torn bytes are gone
        j2.append("3", {"value": 3, "text": ""})
    assert [json.loads(line)["unit"] for line in _lines(j2.path)] == ["0", "1", "2", "3"]

    # A record the caller rejects ends the valid prefix: it and everything after it are recomputed.
    with Journal(tmp_path, "stage", {"a": 1}, valid=lambda unit, data: data["value"] != 1) as j3:
        assert list(j3.done) == ["0"] and len(_lines(j3.path)) == 1
        j3.complete()
    assert not j3.dir.exists()


def test_journal_key_follows_the_inputs_and_stale_journals_go(tmp_path):
    with Journal(tmp_path, "score-teacher", {"params": 1}) as old:
        old.append("0", [1])
    with Journal(tmp_path, "score-teacher-2", {"params": 1}) as other_slot:
        other_slot.append("0", [1])
    with Journal(tmp_path, "score-teacher", {"params": 2}) as new:
        assert new.key != old.key and new.done == {}
    assert not old.dir.exists()  # another key of the same slot: can never be resumed
    assert other_slot.dir.exists()  # another slot is left alone


def test_journal_has_one_writer(tmp_path):
    with Journal(tmp_path, "teach", {}):
        with pytest.raises(RdptError, match=r"units.jsonl: another process is running this stage"):
            Journal(tmp_path, "teach", {}).__enter__()


def test_model_fingerprint_sees_a_changed_file(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    before = model_fingerprint(str(tmp_path), None, None)
    assert model_fingerprint(str(tmp_path), None, None) == before
    (tmp_path / "config.json").write_text('{"x": 1}')
    assert model_fingerprint(str(tmp_path), None, None) != before
    assert model_fingerprint("org/model", "abc", None)["revision"] == "abc"  # hub id: no files to read


# ----------------------------------------------------------------------------------- a micro world
@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_lm_factory):
    """A tiny random LM (as teacher, student and distilled), two benchmarks, and params for them."""
    root = tmp_path_factory.mktemp("resume_world")
    model = tiny_lm_factory("resume_lm", CORPUS, chat_template=TEMPLATE)
    for bench, n in (("easy", 7), ("hard", 5)):
        with open(root / f"{bench}.jsonl", "w") as fh:
            for i in range(n):
                fh.write(json.dumps({"id": f"{bench}{i}", "question": f"Ana has {i} pens and gets {i % 3}. Sum?",
                                     "answer": str(i + i % 3)}) + "\n")
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    for role in ("teacher", "student"):
        data["models"][role]["path"] = model
    data["device"] = "cpu"
    data["data"]["train"] = {"path": str(root / "easy.jsonl"), "id_field": "id"}
    data["data"]["benchmarks"] = {b: {"path": str(root / f"{b}.jsonl"), "id_field": "id"} for b in ("easy", "hard")}
    data["teach"].update(n_questions=None, num_samples=2, max_new_tokens=20, batch_size=2, only_correct=False)
    data["generate"].update(num_samples=2, max_new_tokens=40, batch_size=1)
    data["score"].update(max_tokens_per_batch=120)  # a few responses per batch: many batches
    params_path = root / "params.yaml"
    params_path.write_text(yaml.safe_dump(data, sort_keys=False))
    return {"root": root, "model": model, "params_path": params_path, "params": parse_params(data)}


class _Interrupt(Exception):
    pass


def _interrupt_after(monkeypatch, n: int) -> None:
    """Make the run die right after its n-th journaled unit (like a kill between two batches)."""
    real, count = Journal.append, [0]

    def append(self, unit, data):
        out = real(self, unit, data)
        count[0] += 1
        if count[0] == n:
            raise _Interrupt
        return out

    monkeypatch.setattr(Journal, "append", append)


def test_teach_resumes_after_an_interruption(world, tmp_path, monkeypatch, caplog):
    from rdpt.generation.responses import teach
    from rdpt.models import role_ref

    params, model = world["params"], world["model"]
    reference = teach(params, role_ref(params, "teacher", model), str(tmp_path / "ref.jsonl"),
                      journal_dir=str(tmp_path / "j_ref"))
    assert not any((tmp_path / "j_ref").iterdir())  # deleted after success
    with monkeypatch.context() as m:
        _interrupt_after(m, 2)
        with pytest.raises(_Interrupt):
            teach(params, role_ref(params, "teacher", model), str(tmp_path / "out.jsonl"),
                  journal_dir=str(tmp_path / "j"))
    assert not (tmp_path / "out.jsonl").exists()  # no half-written artifact
    with caplog.at_level("INFO",
                         logger="rdpt.io.journal"):
        assert teach(params, role_ref(params, "teacher", model), str(tmp_path / "out.jsonl"),
                     journal_dir=str(tmp_path / "j")) == reference
    assert "teach: 4 unit(s): 2 from the journal, 2 computed" in caplog.text  # 7 questions, 2 per batch
    assert (tmp_path / "out.jsonl").read_bytes() == (tmp_path / "ref.jsonl").read_bytes()


def test_resumed_sampling_skips_finished_batches_and_matches(world):
    import torch

    from rdpt.engines.hf import HfEngine
    from rdpt.generation.sample import sample
    from rdpt.models import load_model, load_tokenizer, render_prompt

    tok = load_tokenizer(world["model"], padding_side="left")
    model = HfEngine(load_model(world["model"], torch.device("cpu"), torch.float32), pad_id=tok.pad_token_id)
    prompts = [render_prompt(tok, f"Ana has {i} pens. Sum?" + " more" * (i % 4)) for i in range(7)]
    args = dict(num_samples=2, temperature=1.0, top_p=1.0, max_new_tokens=12, batch_size=2, seed=3)
    seen: dict[int, list] = {}
    full = sample(model, tok, prompts, **args, on_batch=lambda b, idx, out: seen.setdefault(b, out))
    assert sorted(seen) == [0, 1, 2, 3]
    ran: list[int] = []
    resumed = sample(model, tok, prompts, **args, done={0: seen[0], 2: seen[2]},
                     on_batch=lambda b, idx, out: ran.append(b))
    assert ran == [1, 3] and resumed == full  # later batches draw the same samples as in one go


def test_resumed_scoring_is_bit_identical_to_an_uninterrupted_run(world, tmp_path):
    """score_items with the batches of an interrupted run as ``done``: the same plan, bit-identical results."""
    import torch

    from rdpt.engines.hf import HfEngine
    from rdpt.models import load_model, load_tokenizer, render_prompt
    from rdpt.provenance.score import ScoreItem, score_items
    from rdpt.provenance.segment import split

    tok = load_tokenizer(world["model"])
    model = load_model(world["model"], torch.device("cpu"), torch.float32)
    texts = [" ".join(CORPUS[i: i + 1 + i % 3]) for i in range(9)] + ["", "x"]
    items = [ScoreItem(f"r{i}", render_prompt(tok, f"q{i}"), t, split(t)) for i, t in enumerate(texts)]
    sp = world["params"].score

    def engine():  # a budget of a few responses per batch, so the run has several batches
        return HfEngine(model, chunk_size=sp.chunk_size, max_tokens_per_batch=200, pad_id=tok.pad_token_id)

    seen = []
    want, stats = score_items(engine(), tok, items, progress=False, rank_clip=sp.rank_clip,
                              on_batch=lambda keys, scores, st: seen.append((keys, st)))
    assert stats.n_items == len(items) and stats.tokens_scored > 0 and len(seen) > 3
    assert sum(st["tokens_scored"] for _, st in seen) == stats.tokens_scored
    assert sorted(k for keys, _ in seen for k in keys) == sorted(it.key for it in items)  # each response once

    class Killed(Exception):
        pass

    records = []

    def killed_after_two(keys, scores, st):
        records.append((keys, scores, st))
        if len(records) == 2:
            raise Killed

    with pytest.raises(Killed):
        score_items(engine(), tok, items, progress=False, rank_clip=sp.rank_clip, on_batch=killed_after_two)
    done = {k: [tuple(x) for x in s] for keys, scores, _ in records for k, s in zip(keys, scores)}
    resumed, resumed_stats = score_items(engine(), tok, items, progress=False, rank_clip=sp.rank_clip, done=done)
    assert resumed == want
    assert resumed_stats.tokens_scored + sum(st["tokens_scored"] for *_, st in records) == stats.tokens_scored


# ------------------------------------------------------------------------------ SIGKILL of a stage
# Runs a stage file as `python stages/<x>.py ...`, with Journal.append slowed down so the test can
# SIGKILL it after a few batches were journaled, whatever the machine's speed.
_SLOW_DRIVER = """
import runpy, sys, time
import rdpt.io.journal
append = rdpt.io.journal.Journal.append
def slow(self, unit, data):
    out = append(self, unit, data)
    time.sleep(0.3)
    return out
rdpt.io.journal.Journal.append = slow
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _stage(args: list[str], slow: bool = False) -> subprocess.Popen:
    cmd = [sys.executable] + (["-c", _SLOW_DRIVER] if slow else []) + args
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run(args: list[str]) -> str:
    proc = _stage(args)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return err


def _complete_lines(journal_root: Path) -> int:
    files = list(journal_root.glob("*/units.jsonl"))
    return sum(line.endswith(b"\n") for line in _lines(files[0])) if files else 0


def _kill_after(args: list[str], journal_root: Path, n: int) -> int:
    """Start the stage, SIGKILL it once n batches are journaled; the number of batches it had journaled."""
    proc = _stage(args, slow=True)
    deadline = time.monotonic() + 300
    while _complete_lines(journal_root) < n:
        assert proc.poll() is None, f"stage ended before it was killed:\n{proc.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, "stage journaled nothing in 300 s"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    return _complete_lines(journal_root)


def _resume_and_compare(args: list[str], journal_root: Path, slot: str, n_units: int, n_done: int,
                        out: Path, reference: Path) -> None:
    log = _run(args)
    assert f"{slot}: {n_units} unit(s): {n_done} from the journal, {n_units - n_done} computed" in log
    assert out.read_bytes() == reference.read_bytes()
    assert list(journal_root.iterdir()) == []  # the journal is deleted once the artifact is in place


@pytest.fixture(scope="module")
def reference_generations(world):
    """An uninterrupted run, in this process (the stage subprocesses must match it to the byte)."""
    from rdpt.generation.responses import generate
    from rdpt.models import role_ref

    out = world["root"] / "ref_generations.jsonl"
    ref = role_ref(world["params"], "distilled", world["model"])
    generate(world["params"], ref, "distilled", str(out), journal_dir=str(world["root"] / "j_ref"))
    return out


@pytest.mark.slow
def test_generate_killed_mid_run_resumes_to_the_same_bytes(world, reference_generations, tmp_path):
    out, journal_root = tmp_path / "generations.jsonl", tmp_path / "journal"
    args = ["stages/generate.py", "--params", str(world["params_path"]), "--role", "distilled",
            "--model", world["model"], "--out", str(out), "--journal-dir", str(journal_root)]
    n_done = _kill_after(args, journal_root, 3)
    assert not out.exists() and not list(tmp_path.glob(".generations.jsonl.*"))
    assert 3 <= n_done < 12  # 7 + 5 questions, one per batch
    _resume_and_compare(args, journal_root, "generate-distilled", 12, n_done, out, reference_generations)


@pytest.mark.slow
def test_score_killed_mid_run_resumes_to_the_same_bytes(world, reference_generations, tmp_path):
    from rdpt.models import role_ref
    from rdpt.provenance.score import score
    from rdpt.provenance.segment import segment

    sentences = tmp_path / "sentences.parquet"
    segment(world["params"], str(reference_generations), str(sentences), str(tmp_path / "empty.parquet"))

    def args(out: Path, journal_root: Path) -> list[str]:
        return ["stages/score.py", "--params", str(world["params_path"]), "--role", "teacher",
                "--model", world["model"], "--generations", str(reference_generations),
                "--sentences", str(sentences), "--out", str(out), "--journal-dir", str(journal_root)]

    reference = tmp_path / "reference"  # uninterrupted, in this process
    ref = role_ref(world["params"], "teacher", world["model"])
    score(world["params"], ref, "teacher", str(reference_generations), str(sentences), str(reference),
          journal_dir=str(tmp_path / "j_ref"))
    out, journal_root = tmp_path / "scores", tmp_path / "journal"
    n_done = _kill_after(args(out, journal_root), journal_root, 3)
    assert not out.exists()
    records = [json.loads(line) for line in _lines(next(journal_root.glob("*/units.jsonl")))[:n_done]]
    log = _run(args(out, journal_root))
    match = re.search(r"score-teacher: (\d+) unit\(s\): (\d+) from the journal, (\d+) computed", log)
    assert match, log[-2000:]
    n_units, resumed, computed = map(int, match.groups())
    assert resumed == n_done and computed == n_units - n_done and n_units > n_done
    scored_before = {k for r in records for k in r["data"]["keys"]}
    assert len(scored_before) == sum(len(r["data"]["keys"]) for r in records)  # none twice
    assert (out / "scores.parquet").read_bytes() == (reference / "scores.parquet").read_bytes()
    cost, ref_cost = (json.loads((d / "cost.json").read_text()) for d in (out, reference))
    assert cost["tokens_scored"] == ref_cost["tokens_scored"] and cost["n_items"] == ref_cost["n_items"]
    assert list(journal_root.iterdir()) == []


def test_a_journal_whose_artifact_came_from_elsewhere_is_pruned(tmp_path):
    """Killed, then DVC restored the output from its run cache: the orphan journal goes at the next repro."""
    import os

    from rdpt.io.journal import prune_orphans

    target, other = tmp_path / "out.jsonl", tmp_path / "other.jsonl"
    for slot, tgt in (("orphan", target), ("waiting", other)):
        with Journal(tmp_path / "j", slot, {"s": slot}, target=tgt) as journal:
            journal.append("0", {"x": 1})
    target.write_text("restored\n")
    later = os.stat(next((tmp_path / "j").glob("orphan--*")) / "units.jsonl").st_mtime + 5
    os.utime(target, (later, later))
    gone = prune_orphans(tmp_path / "j")
    assert [g.name.split("--")[0] for g in gone] == ["orphan"]
    assert [p.name.split("--")[0] for p in (tmp_path / "j").iterdir()] == ["waiting"]  # its artifact is absent
    with Journal(tmp_path / "j", "waiting", {"s": "waiting"}, target=other) as journal:  # in use: kept
        other.write_text("x\n")
        os.utime(other, (later + 10, later + 10))
        assert prune_orphans(tmp_path / "j") == [] and journal.n_resumed == 1

"""How training processes are launched: in this process, or under ``accelerate launch``.

`distill` and the selection runs call :func:`fine_tune`. With ``launch.num_processes: 1`` and no
``launch.config_file`` it trains here. Otherwise it writes a spec (params, student, rows, seed) into a
scratch folder next to ``out_dir`` and runs this module as the training script of ``accelerate launch``
(same interpreter and rdpt; the port is a free one unless ``launch.main_process_port`` names it)::

    python -m accelerate.commands.launch --config_file configs/accelerate/fsdp.yaml --num_processes 8 \\
        --main_process_port 41234 -m rdpt.training.launch data/.distilled.tmp.launch/spec.json

Every process loads the student and trains (the Trainer shards the batches; DDP, FSDP or DeepSpeed come
from the config); the main process saves the model (FSDP: a gathered full state dict) and the stats,
which the parent reads back; the workers' output streams to stderr. On CPU, several processes are
torchrun workers joined by gloo (``--multi_gpu``: accelerate 1.x has no multi-CPU flag, and its MULTI_CPU
type needs mpirun). Try it with a params file whose ``device: cpu`` and ``launch: {num_processes: 2}``::

    python stages/distill.py --params my-params.yaml --student data/toy/models/student \\
        --data data/teach.jsonl --out /tmp/distilled
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch

import rdpt
from rdpt import RdptError
from rdpt.models import ModelRef, load_model, load_tokenizer, prompt_for_response, render_prompt, resolve_device
from rdpt.training.sft import sft

log = logging.getLogger(__name__)


def fine_tune(params, student: ModelRef, rows, *, seed: int, out_dir: str | Path, section: str = "distill") -> dict:
    """Fine-tune ``student`` (its resolved reference) on ``rows`` (columns question, text); save it into ``out_dir``.

    ``section`` names the training budget (a :class:`~rdpt.params.stages.TrainParams` in ``params``): ``distill`` for
    the distill stage, ``select.train`` for the selection runs.

    Returns :func:`rdpt.training.sft.sft`'s stats plus ``"launch"``: how it ran. On failure ``out_dir`` is left as
    it was (absent if it was absent) and the scratch folder is removed.
    """
    out_dir = Path(out_dir).absolute()
    launch = params.launch
    in_process = launch.num_processes == 1 and launch.config_file is None
    info = {"num_processes": launch.num_processes, "mixed_precision": launch.mixed_precision,
            "config_file": launch.config_file, "in_process": in_process}
    # (question, response[, the benchmark system prompt the response was sampled under])
    systems = rows["system_prompt"] if "system_prompt" in rows else [None] * len(rows["question"])
    pairs = [[str(q), str(t)] + ([s] if isinstance(s, str) else [])
             for q, t, s in zip(rows["question"], rows["text"], systems)]
    # Next to out_dir (same filesystem: the saved model is renamed into place, not copied).
    scratch = out_dir.with_name(f".{out_dir.name.lstrip('.')}.launch")
    existed = out_dir.exists()
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        if in_process:
            from accelerate.utils import patch_environment

            # launch.mixed_precision without a launcher: the same env var accelerate launch would set
            mp = launch.mixed_precision
            with patch_environment(ACCELERATE_MIXED_PRECISION=mp) if mp else nullcontext():
                stats = train(params, student, pairs, seed=seed, save_dir=scratch / "model",
                              trainer_dir=scratch / "trainer", section=section)
        else:
            stats = _launched(params, student, pairs, seed, scratch, section)
        _publish(scratch / "model", out_dir)
    except BaseException:
        if not existed:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {**stats, "launch": info}


def train(params, ref: ModelRef, pairs: list, *, seed: int, save_dir: Path, trainer_dir: Path,
          section: str = "distill") -> dict:
    """Load the student, train it on (question, response[, system prompt]) pairs and save it: one process's share
    of the work. Prompts follow the student's ``think`` rule (:func:`rdpt.models.prompt_for_response`): an R1-style
    template's ``<think>\\n`` is not doubled by a teacher trace that starts with ``<think>``."""
    device, dtype = resolve_device(params.device, params.dtype)
    if device.type == "cuda" and "LOCAL_RANK" in os.environ:
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))  # one GPU per launched process
    tokenizer = load_tokenizer(ref, padding_side="right")
    # Training places the model itself (one device per process, DDP/FSDP), never by the scoring device_map.
    model = load_model(dataclasses.replace(ref, device_map=None, max_memory=None), device, dtype)
    log.info("student: %s on %s (%s)", ref.path, device, str(dtype).removeprefix("torch."))
    examples = []
    for q, t, *system in pairs:
        prompt = render_prompt(tokenizer, q, system[0] if system else None)
        examples.append({"prompt": prompt_for_response(tokenizer, prompt, t), "response": t})
    return sft(model, tokenizer, examples, train_section(params, section), output_dir=str(trainer_dir), seed=seed,
               save_dir=str(save_dir))


def train_section(params, section: str):
    """The TrainParams a dotted name points at (``distill``, ``select.train``)."""
    value = params
    for part in section.split("."):
        value = getattr(value, part)
    return value


def launch_command(params, spec_path: str | Path) -> list[str]:
    """The ``accelerate launch`` command line that runs this module's worker on ``spec_path``."""
    launch = params.launch
    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    config = {}
    if launch.config_file is not None:
        config = _read_config(launch.config_file)
        cmd += ["--config_file", str(launch.config_file)]
        if config.get("num_processes") not in (None, launch.num_processes):
            log.warning("launch.num_processes=%d overrides num_processes=%s of %s", launch.num_processes,
                        config["num_processes"], launch.config_file)
    else:
        # torchrun workers; on CPU (use_cpu in the Trainer) they join with gloo, on GPUs with NCCL (DDP).
        cmd += ["--multi_gpu", "--num_machines", "1", "--dynamo_backend", "no"]
    cmd += ["--num_processes", str(launch.num_processes)]
    if launch.mixed_precision is not None:
        cmd += ["--mixed_precision", launch.mixed_precision]
    elif launch.config_file is None:
        cmd += ["--mixed_precision", "no"]  # accelerate's default, said out loud
    port = launch.main_process_port
    if port is None and "main_process_port" not in config:
        port = _free_port()
    if port is not None:
        cmd += ["--main_process_port", str(port)]
    return cmd + ["-m", "rdpt.training.launch", str(spec_path)]


def _launched(params, student: ModelRef, pairs: list, seed: int, scratch: Path, section: str) -> dict:
    spec_path, stats_path = scratch / "spec.json", scratch / "stats.json"
    rows_path = scratch / "rows.jsonl"
    with open(rows_path, "w") as fh:
        fh.writelines(json.dumps(pair) + "\n" for pair in pairs)
    spec = {"params": params.model_dump(mode="json"), "student": dataclasses.asdict(student), "rows": str(rows_path),
            "seed": seed, "save_dir": str(scratch / "model"), "trainer_dir": str(scratch / "trainer"),
            "stats": str(stats_path), "section": section}
    spec_path.write_text(json.dumps(spec, indent=2) + "\n")
    cmd = launch_command(params, spec_path)

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # The workers import the rdpt this process runs (not another install).
    root = str(Path(rdpt.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    if params.device == "cpu" or not torch.cuda.is_available():
        env["ACCELERATE_USE_CPU"] = "true"

    log_file = Path(tempfile.mkstemp(prefix="rdpt-launch-", suffix=".log")[1])
    log.info("launching %d training processes: %s", params.launch.num_processes, " ".join(cmd))
    start = time.perf_counter()
    rc = _run_streamed(cmd, env, log_file)
    if rc != 0:
        worker_error = _first_error(log_file)
        raise RdptError(f"accelerate launch failed (exit code {rc})" + (f": {worker_error}" if worker_error else "")
                        + f"; full output above and in {log_file}")
    log_file.unlink(missing_ok=True)
    if not stats_path.is_file() or not (scratch / "model").is_dir():
        raise RdptError(f"accelerate launch exited 0 but wrote no model/stats under {scratch}")
    log.info("launched training finished in %.1fs", time.perf_counter() - start)
    return json.loads(stats_path.read_text())


def _run_streamed(cmd: list[str], env: dict, log_file: Path) -> int:
    """Run ``cmd``, copying its output (bytes as they come, progress bars included) to stderr and ``log_file``."""
    out = getattr(sys.stderr, "buffer", None)
    with open(log_file, "wb") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            while chunk := proc.stdout.read1(65536):
                fh.write(chunk)
                if out is not None:
                    out.write(chunk)
                    out.flush()
                else:
                    sys.stderr.write(chunk.decode(errors="replace"))
            return proc.wait()
        finally:
            if proc.poll() is None:  # interrupted: stop the launcher (it stops its workers)
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _first_error(log_file: Path) -> str | None:
    """The workers' cause of failure: their one-line ``error: ...``, else the first exception line of a traceback."""
    lines = [re.sub(r"^\[rank\d+\]: ", "", line) for line in log_file.read_text(errors="replace").splitlines()]
    for line in lines:
        if line.startswith("error: "):
            return line[len("error: "):].strip()
    for line in lines:
        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception): ", line):
            return line.strip()
    return None


def _read_config(path: str) -> dict:
    from rdpt.params import parse_yaml, read_text  # the one YAML reader (duplicate keys are errors)

    file = Path(path)
    if not file.is_file():
        raise RdptError(f"launch.config_file: {path} does not exist")
    data = parse_yaml(read_text(file, "accelerate config"), f"launch.config_file: {path}") or {}
    if not isinstance(data, dict):
        raise RdptError(f"launch.config_file: {path} is not a mapping of accelerate settings")
    return data


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _publish(model_dir: Path, out_dir: Path) -> None:
    """Move the saved model into ``out_dir`` (created, or filled if it exists)."""
    if not out_dir.exists():
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        model_dir.rename(out_dir)
        return
    for child in model_dir.iterdir():
        child.rename(out_dir / child.name)


def _worker(spec_path: str) -> None:
    """One launched process: train on the spec's rows; the main process saves the model and writes the stats."""
    from accelerate import PartialState

    from rdpt.params import parse_params

    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format=f"%(asctime)s [rank {rank}] %(name)s: %(message)s", datefmt="%H:%M:%S")
    spec = json.loads(Path(spec_path).read_text())
    params = parse_params(spec["params"], spec_path)
    if params.device == "cpu" or not torch.cuda.is_available():
        os.environ["ACCELERATE_USE_CPU"] = "true"  # gloo process group, CPU tensors
    with open(spec["rows"]) as fh:
        pairs = [json.loads(line) for line in fh]
    stats = train(params, ModelRef(**spec["student"]), pairs, seed=spec["seed"], save_dir=Path(spec["save_dir"]),
                  trainer_dir=Path(spec["trainer_dir"]), section=spec["section"])
    state = PartialState()  # the Trainer's (already initialised) process state
    if state.is_main_process:
        tmp = Path(spec["stats"] + ".tmp")
        tmp.write_text(json.dumps(stats) + "\n")
        tmp.rename(spec["stats"])
    state.wait_for_everyone()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: accelerate launch [options] -m rdpt.training.launch SPEC.json  (written by fine_tune)")
    try:
        _worker(sys.argv[1])
    except RdptError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(1)

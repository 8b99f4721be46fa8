"""fine_tune in this process and under `accelerate launch` (2 gloo processes on CPU): same curve, same model."""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from rdpt import RdptError
from rdpt.models import ModelRef
from rdpt.params import parse_params
from rdpt.training.launch import fine_tune, launch_command

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = "{% for m in messages %}Q: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}A:{% endif %}"
N_EXAMPLES = 32  # a multiple of the global batch: no short (1 process) vs padded (2 processes) last batch


def _pairs() -> list[tuple[str, str]]:
    rng = random.Random(0)
    pairs = []
    for _ in range(N_EXAMPLES):
        a, b = rng.randint(1, 99), rng.randint(1, 99)
        pairs.append((f"What is {a} + {b}?", f" {a} plus {b} makes {a + b}" + " so it is" * rng.randint(0, 3) + "."))
    return pairs


@pytest.fixture(scope="module")
def setup(tiny_lm_factory):
    pairs = _pairs()
    student = tiny_lm_factory("launch_student", [q + a for q, a in pairs], chat_template=TEMPLATE)
    rows = pd.DataFrame({"question": [q for q, _ in pairs], "text": [a for _, a in pairs]})
    return student, rows


def _params(student: str, *, batch_size: int, launch: dict | None = None, **distill):
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["device"] = "cpu"
    data["models"]["student"] = {"path": student, "revision": None, "chat_template": None}
    data["distill"] = {"epochs": 2, "batch_size": batch_size, "learning_rate": 5e-3, "warmup_ratio": 0.1,
                       "max_length": None, **distill}
    data["launch"] = launch or {}
    return parse_params(data)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    return dict(AutoModelForCausalLM.from_pretrained(folder).named_parameters())


@pytest.fixture(scope="module")
def one_process(setup, tmp_path_factory):
    """The reference: one process, batch 8 (2 epochs of 32 examples = 8 steps)."""
    student, rows = setup
    out = tmp_path_factory.mktemp("one") / "model"
    return fine_tune(_params(student, batch_size=8), ModelRef(student), rows, seed=0, out_dir=out), out


def test_in_process_matches_a_direct_sft_call(setup, one_process, tmp_path):
    """The in-process path is the former distill code: load, sft, save_pretrained (same stats, same weights)."""
    from rdpt.models import load_model, load_tokenizer
    from rdpt.training.sft import sft

    student, rows = setup
    stats, out = one_process
    params = _params(student, batch_size=8)
    tok = load_tokenizer(student, padding_side="right")
    model = load_model(student, torch.device("cpu"), torch.float32)
    from rdpt.models import render_prompt

    examples = [{"prompt": render_prompt(tok, q), "response": t} for q, t in zip(rows["question"], rows["text"])]
    direct = sft(model, tok, examples, params.distill, output_dir=str(tmp_path / "_trainer"), seed=0)
    model.save_pretrained(tmp_path / "direct")
    tok.save_pretrained(tmp_path / "direct")

    assert stats["launch"] == {"num_processes": 1, "mixed_precision": None, "config_file": None, "in_process": True}
    for key in ("train_loss_curve", "steps", "n_examples", "n_dropped", "tokens", "train_loss"):
        assert stats[key] == direct[key], key
    assert stats["steps"] == 8 and len(stats["train_loss_curve"]) == 8
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in (tmp_path / "direct").iterdir())
    ours, theirs = _weights(out), _weights(tmp_path / "direct")
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert [p.name for p in out.parent.iterdir()] == ["model"]  # no scratch folder left beside it


@pytest.mark.parametrize("config", [None, "configs/accelerate/cpu-2proc.yaml"])
def test_two_gloo_processes_follow_the_one_process_curve(setup, one_process, tmp_path, config):
    """2 processes x batch 4 = 1 process x batch 8: the same batches, token-weighted loss, same updates.

    Measured on CPU (torch 2.13, transformers 5.23, accelerate 1.15): max relative difference of the
    logged losses 1.0e-7, max |weight difference| 6.0e-8 (float32 reduction order); the launched run
    took ~7 s (2 cores), its training ~0.3 s; the same with configs/accelerate/cpu-2proc.yaml.
    Tolerances: 1e-4 relative on losses, 1e-5 absolute on weights.
    """
    student, rows = setup
    ref, ref_out = one_process
    out = tmp_path / "model"
    config = config and str(ROOT / config)
    params = _params(student, batch_size=4, launch={"num_processes": 2, "config_file": config})
    stats = fine_tune(params, ModelRef(student), rows, seed=0, out_dir=out)

    assert stats["launch"] == {"num_processes": 2, "mixed_precision": None, "config_file": config, "in_process": False}
    assert stats["steps"] == ref["steps"] == 8
    assert [s for s, _ in stats["train_loss_curve"]] == [s for s, _ in ref["train_loss_curve"]]
    rel = max(abs(a - b) / a for (_, a), (_, b) in zip(ref["train_loss_curve"], stats["train_loss_curve"]))
    assert rel < 1e-4, rel
    assert ref["train_loss_curve"][-1][1] < ref["train_loss_curve"][0][1] - 0.3  # it did learn something
    assert stats["n_examples"] == N_EXAMPLES and stats["tokens"] == ref["tokens"]

    ours, theirs = _weights(out), _weights(ref_out)
    assert ours.keys() == theirs.keys()
    assert max((ours[k] - theirs[k]).abs().max().item() for k in theirs) < 1e-5
    moved = max((theirs[k] - w).abs().max().item() for k, w in _weights(Path(student)).items())
    assert moved > 1e-3  # the comparison above is not between two untrained copies
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    assert "training_args.bin" not in {p.name for p in out.iterdir()}
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_launch_command_line(setup):
    student, _ = setup
    params = _params(student, batch_size=4, launch={"num_processes": 2, "main_process_port": 29517})
    cmd = launch_command(params, "spec.json")
    assert cmd[1:] == ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "1", "--dynamo_backend",
                       "no", "--num_processes", "2", "--mixed_precision", "no", "--main_process_port", "29517",
                       "-m", "rdpt.training.launch", "spec.json"]
    config = str(ROOT / "configs" / "accelerate" / "fsdp.yaml")
    params = _params(student, batch_size=4, launch={"num_processes": 8, "config_file": config,
                                                    "mixed_precision": "bf16"})
    cmd = launch_command(params, "spec.json")
    assert cmd[3:9] == ["--config_file", config, "--num_processes", "8", "--mixed_precision", "bf16"]
    assert cmd[9] == "--main_process_port" and int(cmd[10]) > 0  # a free port (the config names none)


def test_a_missing_config_file_is_one_line_and_leaves_nothing(setup, tmp_path):
    student, rows = setup
    params = _params(student, batch_size=4, launch={"config_file": str(tmp_path / "nope.yaml")})
    with pytest.raises(RdptError, match=r"^launch.config_file: .*nope.yaml does not exist$"):
        fine_tune(params, ModelRef(student), rows, seed=0, out_dir=tmp_path / "model")
    assert list(tmp_path.iterdir()) == []


def test_a_failing_worker_is_one_line_and_leaves_nothing(setup, tmp_path):
    student, rows = setup
    # every example is longer than 8 tokens: each worker's sft raises, the launch exits non-zero
    params = _params(student, batch_size=4, launch={"num_processes": 2}, max_length=8)
    with pytest.raises(RdptError) as info:
        fine_tune(params, ModelRef(student), rows, seed=0, out_dir=tmp_path / "model")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("accelerate launch failed (exit code 1): sft: no example to train on (32 given, 32 too")
    log_file = Path(message.rsplit(" in ", 1)[1])
    assert log_file.is_file() and "no example to train on" in log_file.read_text()
    log_file.unlink()
    assert list(tmp_path.iterdir()) == []

"""Does pinning the CPU code paths make tiny-model training, sampling and scoring bitwise identical across x86 CPUs?

Issue 15: a fresh ``dvc repro`` on an Intel Xeon (AVX-512) gave other toy results than the AMD EPYC (AVX2)
the committed ones come from. This script tests, on ONE machine, whether a "pinned" set of settings gives
the same bits whatever CPU features the libraries are allowed to use. It emulates other machines by lowering the
ISA each library may use: ATen's kernel set (``ATEN_CPU_CAPABILITY``), MKL's (``MKL_ENABLE_INSTRUCTIONS``),
oneDNN's (``ONEDNN_MAX_CPU_ISA``), glibc's libm ifuncs (``GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX2,-FMA,...``) and
the number of cores (``taskset``)::

    python benchmarks/cpu_pinning.py            # about 5 minutes on 2 CPU cores: 23 subprocesses
    python benchmarks/cpu_pinning.py --quick    # 4 runs, under a minute
    python benchmarks/cpu_pinning.py --json     # also one JSON object with every run

Each configuration runs in a fresh subprocess whose environment is set before ``import torch``. The subprocess
builds a tiny Llama (2 layers, hidden 64, vocab 300; ``LlamaConfig`` + ``AutoModelForCausalLM.from_config``,
seed 0), trains it for 30 AdamW steps (warmup, grad clipping at 1.0) on fixed Markov-chain token batches, samples
8 sequences of 40 new tokens with a seeded ``torch.Generator`` and scores them (log-softmax over the vocabulary).
It prints the sha256 of the initial weights, the trained weights, the scoring logits and the sampled tokens, and
the wall time of train + sample + score (imports excluded).

Settings:

* ``unpinned``: what that machine does by default (ATen's best kernels, MKL's auto branch, every core);
* ``unpinned-1thr``: ``unpinned`` with one thread (separates the kernels' cost from the threads');
* ``pinned``: ``ATEN_CPU_CAPABILITY=default``, ``MKL_CBWR=COMPATIBLE``, one thread (``OMP_NUM_THREADS=1``,
  ``MKL_NUM_THREADS=1``, ``torch.set_num_threads(1)``), ``ONEDNN_MAX_CPU_ISA=SSE41`` and glibc's baseline libm
  (``GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX,-AVX2,-FMA,-FMA4``);
* ``pinned-no-glibc``: ``pinned`` without the glibc mask (the machine's own libm variants);
* ``pinned-2thr``: ``pinned`` with 2 threads instead of 1;
* ``pinned-runtime``: no pinning env at process start; the same ATen/MKL variables are put in ``os.environ``
  after ``import torch`` (before the first tensor op) and ``torch.set_num_threads(1)`` is called: what a stage could
  do without re-executing itself. glibc's mask cannot be applied this way (ld.so reads it at exec).

``--cost`` (on by default; ``--no-cost`` skips it) also times 10 training steps at the toy teacher's shape
(4 layers, hidden 128, vocab 512, batch 16 x 256 tokens): pinned, unpinned-1thr and unpinned, in the same run.
On a 2-core machine shared with other jobs, 2-thread OpenMP runs are slowed by contention: compare pinned with
``unpinned-1thr`` for the cost of the kernels alone.

What this cannot show from one machine: AVX-512 kernels (this CPU has none), an Intel CPU's MKL dispatch (MKL picks
code by vendor as well as by ISA), another glibc or torch build. See docs/reproducibility.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

PINNED_GLIBC = ["AVX", "AVX2", "FMA", "FMA4"]
PINNED_ENV = {
    "ATEN_CPU_CAPABILITY": "default",
    "MKL_CBWR": "COMPATIBLE",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "ONEDNN_MAX_CPU_ISA": "SSE41",
}

# An emulated machine: what its hardware lets each library use. "aten" is the best ATen kernel set it has
# (ATen needs AVX2 + FMA for its avx2 kernels, so an AVX-only CPU runs the default ones).
def _this_cpu() -> str:
    """This machine as the table names it: model name and its widest x86 vector ISA, from /proc/cpuinfo."""
    try:
        info = open("/proc/cpuinfo").read()
    except OSError:
        return "this CPU"
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "CPU")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    isa = "AVX-512" if "avx512f" in flags else "AVX2+FMA" if {"avx2", "fma"} <= flags else "AVX" if "avx" in flags \
        else "SSE"
    return f"this {name} ({isa}, {os.cpu_count()} cores)"


MACHINES = {
    "this-epyc": {"label": _this_cpu(), "env": {}, "glibc": [], "aten": None, "cpus": None},
    "avx-nofma": {"label": "AVX, no AVX2/FMA (Sandy Bridge-like)",
                  "env": {"MKL_ENABLE_INSTRUCTIONS": "AVX", "ONEDNN_MAX_CPU_ISA": "AVX"},
                  "glibc": ["AVX2", "FMA", "FMA4"], "aten": "default", "cpus": None},
    "sse42": {"label": "SSE4.2 only (Nehalem-like)",
              "env": {"MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "ONEDNN_MAX_CPU_ISA": "SSE41"},
              "glibc": ["AVX", "AVX2", "FMA", "FMA4"], "aten": "default", "cpus": None},
    "1-core": {"label": "this CPU with 1 core", "env": {}, "glibc": [], "aten": None, "cpus": "0"},
}

TINY = dict(layers=2, hidden=64, heads=4, vocab=300, batch=8, seq=64, steps=30, sample=True)
TEACHER_SHAPE = dict(layers=4, hidden=128, heads=4, vocab=512, batch=16, seq=256, steps=10, sample=False)


# ---------------------------------------------------------------- the subprocess


def _sha(chunks) -> str:
    import hashlib

    h = hashlib.sha256()
    for c in chunks:
        h.update(c)
    return h.hexdigest()


def _weights_sha(model) -> str:
    state = model.state_dict()
    return _sha(name.encode() + state[name].detach().contiguous().numpy().tobytes() for name in sorted(state))


def worker(spec: dict) -> dict:
    import ctypes
    import random

    import torch

    if spec.get("runtime_env"):  # after import torch, before the first tensor op
        os.environ.update(spec["runtime_env"])
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    from transformers import AutoModelForCausalLM, LlamaConfig

    size = spec["size"]
    t0 = time.perf_counter()
    torch.manual_seed(0)
    hidden = size["hidden"]
    config = LlamaConfig(
        vocab_size=size["vocab"], hidden_size=hidden, intermediate_size=8 * ((8 * hidden // 3 + 7) // 8),
        num_hidden_layers=size["layers"], num_attention_heads=size["heads"], num_key_value_heads=size["heads"],
        head_dim=hidden // size["heads"], max_position_embeddings=512, tie_word_embeddings=True,
        bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )
    model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    init_sha = _weights_sha(model)

    # Fixed batches from a sparse random Markov chain (pure-Python integers: no float code involved).
    rng = random.Random(0)
    vocab = size["vocab"]
    successors = [[rng.randrange(3, vocab) for _ in range(4)] for _ in range(vocab)]

    def sequence(n):
        tok = rng.randrange(3, vocab)
        out = [1]
        for _ in range(n - 1):
            out.append(tok)
            tok = rng.choice(successors[tok]) if rng.random() < 0.9 else rng.randrange(3, vocab)
        return out

    batches = [torch.tensor([sequence(size["seq"]) for _ in range(size["batch"])]) for _ in range(size["steps"])]

    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    warmup = max(1, size["steps"] // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, (size["steps"] - s) / (size["steps"] - warmup)))
    model.train()
    losses = []
    for ids in batches:
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    result = {"init": init_sha, "weights": _weights_sha(model), "final_loss": repr(losses[-1])}

    if size["sample"]:
        model.eval()
        gen = torch.Generator().manual_seed(1234)
        prompts = torch.tensor([sequence(8) for _ in range(8)])
        seqs = prompts
        with torch.no_grad():
            for _ in range(40):  # plain ancestral sampling, temperature 1, no top-k/top-p
                probs = torch.softmax(model(input_ids=seqs).logits[:, -1].float(), dim=-1)
                seqs = torch.cat([seqs, torch.multinomial(probs, 1, generator=gen)], dim=1)
            logits = model(input_ids=seqs).logits
            logprobs = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, seqs[:, 1:, None])[..., 0]
        result.update(samples=_sha([seqs.numpy().tobytes()]), logits=_sha([logits.numpy().tobytes()]),
                      logprob_sum=repr(float(logprobs[:, 8:].sum())))
    result["wall_s"] = round(time.perf_counter() - t0, 3)
    result["aten"] = torch.backends.cpu.get_cpu_capability()
    result["threads"] = torch.get_num_threads()
    try:  # MKL's conditional-numerical-reproducibility branch in effect (3 = COMPATIBLE; 1/2 = off/auto)
        lib = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so"))
        result["mkl_cbwr"] = lib.mkl_serv_cbwr_get(1)
    except (OSError, AttributeError):
        result["mkl_cbwr"] = None
    return result


# ---------------------------------------------------------------- the driver


def config_env(machine: dict, setting: str) -> tuple[dict, dict, int | None]:
    """(process env overlay, runtime env, threads for torch.set_num_threads) for a machine and a setting."""
    env = dict(machine["env"])
    glibc = list(machine["glibc"])
    if machine["aten"]:
        env["ATEN_CPU_CAPABILITY"] = machine["aten"]
    runtime, threads = {}, None
    if setting in ("pinned", "pinned-no-glibc", "pinned-2thr"):
        env.update(PINNED_ENV)
        threads = 1
        if setting == "pinned-2thr":
            env.update(OMP_NUM_THREADS="2", MKL_NUM_THREADS="2")
            threads = 2
        if setting != "pinned-no-glibc":
            glibc += [f for f in PINNED_GLIBC if f not in glibc]
    elif setting == "unpinned-1thr":
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        threads = 1
    elif setting == "pinned-runtime":
        runtime = {k: PINNED_ENV[k] for k in ("ATEN_CPU_CAPABILITY", "MKL_CBWR")}
        threads = 1
    elif setting != "unpinned":
        raise ValueError(setting)
    if glibc:
        env["GLIBC_TUNABLES"] = "glibc.cpu.hwcaps=" + ",".join(f"-{f}" for f in glibc)
    return env, runtime, threads


def run_one(machine_key: str, setting: str, size: dict) -> dict:
    machine = MACHINES[machine_key]
    overlay, runtime, threads = config_env(machine, setting)
    env = {k: v for k, v in os.environ.items()
           if k not in ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA",
                        "OMP_NUM_THREADS", "MKL_NUM_THREADS", "GLIBC_TUNABLES")}
    env.update(overlay)
    spec = {"size": size, "runtime_env": runtime, "threads": threads}
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)]
    if machine["cpus"]:
        cmd = ["taskset", "-c", machine["cpus"], *cmd]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"worker failed ({machine_key}, {setting}):\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"machine": machine_key, "setting": setting, "env": overlay, "runtime_env": runtime, **out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="4 runs: this machine and sse42, pinned and unpinned")
    parser.add_argument("--no-cost", dest="cost", action="store_false", help="skip the teacher-shape timing")
    parser.add_argument("--json", action="store_true", help="also print one JSON object with every run")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return

    if args.quick:
        plan = [(m, s) for s in ("unpinned", "pinned") for m in ("this-epyc", "sse42")]
    else:
        plan = [(m, s) for s in ("unpinned", "pinned", "pinned-no-glibc") for m in MACHINES]
        plan += [("this-epyc", "unpinned-1thr"), ("this-epyc", "pinned"),  # a repeat: run-to-run determinism
                 ("this-epyc", "pinned-2thr"), ("1-core", "pinned-2thr"),
                 ("this-epyc", "pinned-runtime"), ("sse42", "pinned-runtime")]
    rows = []
    for machine_key, setting in plan:
        row = run_one(machine_key, setting, TINY)
        rows.append(row)
        print(f"  ran {machine_key:10s} {setting:16s} {row['wall_s']:6.2f}s", file=sys.stderr, flush=True)

    def short(h):
        return h[:12]

    print("| setting | emulated machine | ATen | MKL CNR | thr | init | weights | logits | samples | wall s |")
    print("|---|---|---|---|--:|---|---|---|---|--:|")
    cbwr_name = {1: "off", 2: "auto", 3: "COMPATIBLE"}
    for r in rows:
        print(f"| {r['setting']} | {MACHINES[r['machine']]['label']} | {r['aten']} | "
              f"{cbwr_name.get(r['mkl_cbwr'], r['mkl_cbwr'])} | {r['threads']} | {short(r['init'])} | "
              f"{short(r['weights'])} | {short(r['logits'])} | {short(r['samples'])} | {r['wall_s']:.2f} |")

    def outcome(setting):
        group = [r for r in rows if r["setting"] == setting]
        keys = {(r["init"], r["weights"], r["logits"], r["samples"]) for r in group}
        return group, len(keys)

    print()
    summary = {}
    for setting in dict.fromkeys(s for _, s in plan):
        group, distinct = outcome(setting)
        machines = sorted({r["machine"] for r in group})
        summary[setting] = {"runs": len(group), "machines": machines, "distinct_results": distinct}
        verdict = "ALL IDENTICAL" if distinct == 1 else f"{distinct} DIFFERENT results"
        print(f"{setting:16s}: {len(group)} runs on {len(machines)} emulated machines -> {verdict}")
    pinned = [r for r in rows if r["setting"] == "pinned"]
    if any(r["setting"] == "pinned-runtime" for r in rows):
        ref = (pinned[0]["weights"], pinned[0]["logits"], pinned[0]["samples"])
        for r in rows:
            if r["setting"] in ("pinned-no-glibc", "pinned-2thr", "pinned-runtime"):
                same = (r["weights"], r["logits"], r["samples"]) == ref
                print(f"  {r['setting']:16s} on {r['machine']:10s} {'==' if same else '!='} pinned")

    def timing(a, b, what):
        print(f"time {a['setting']}/{b['setting']} on this machine, {what}: "
              f"{a['wall_s']:.2f}s / {b['wall_s']:.2f}s = {a['wall_s'] / b['wall_s']:.2f}x")
        return round(a["wall_s"] / b["wall_s"], 2)

    def pick(setting, among):
        return next((r for r in among if r["setting"] == setting and r["machine"] == "this-epyc"), None)

    print()
    ratios = {}
    pin = pick("pinned", rows)
    for base in ("unpinned", "unpinned-1thr"):
        if pick(base, rows):
            ratios[f"tiny_pinned_over_{base}"] = timing(pin, pick(base, rows), "tiny model")
    cost = None
    if args.cost:
        cost = [run_one("this-epyc", s, TEACHER_SHAPE) for s in ("pinned", "unpinned-1thr", "unpinned")]
        what = f"{TEACHER_SHAPE['steps']} training steps at the toy teacher's shape"
        for base in ("unpinned", "unpinned-1thr"):
            ratios[f"teacher_pinned_over_{base}"] = timing(pick("pinned", cost), pick(base, cost), what)
    if args.json:
        print(json.dumps({"runs": rows, "summary": summary, "ratios": ratios, "cost": cost}))


if __name__ == "__main__":
    main()

"""A second, unrelated toy teacher: the decoy that teacher identification must rule out.

It solves the same toy task as the toy teacher, from the same training combinations of names and objects (the
benchmarks stay held out for it too), but it is built like a model from another lab: a GPT-2 architecture
(learned positions, LayerNorm, GELU) instead of Llama / Qwen3, its own byte-level BPE, a plain-text
``### Problem`` / ``### Solution`` chat template, and its own *bullet* reasoning style::

    sentence type     alt teacher (this module)                 toy teacher / student (rdpt/toy/styles.py)
    plan              Goal: find how many apples Ana ends up with.   Let me plan: I will follow the apples ...
    start             - Start: 7 apples.                             Ana starts with 7 apples.
    step (bullet)     - She buys 3 more: 7 + 3 = 10.                 She buys 3 more, so 7 + 3 = 10.
    step (terse)      Now 7 + 3 = 10.                                the same (shared)
    check             In one line: 7 + 3 - 2 = 8.                    Let me check: 7 + 3 - 2 = 8.
    ending            So Ana has 8 apples in the end.                Final count: 8.
    answer            The answer is \\boxed{8}.                       the same (shared)

The terse step and the answer line are shared, as generic phrasing is between real models, so the decoy is
not trivially wrong about every sentence. It is never distilled from: the distilled model learned the toy
teacher's style only, and ``identify`` has to single that one out. Build it (writes ``<out>/teacher/``)::

    python -c "from rdpt.params import ToyAltParams as P; from rdpt.toy.alt import toy_teacher_alt as b; \\
      print(b(P(corpus=200, steps=20, layers=1, hidden=32, heads=2, eval_max_new_tokens=16), 0, 4, '/tmp/alt'))"

Defaults (12,000 solutions, 3 x 128, 0.71M parameters, 1,000 steps of 16) build in about 2.5 min on 2 CPU cores
(training 147 s); sampled accuracy 0.60 toy_easy / 0.46 toy_hard.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from pathlib import Path

import torch

from rdpt.models import render_prompt
from rdpt.params import ToyAltParams, ToyParams, TrainParams
from rdpt.toy.styles import Style
from rdpt.toy.task import make_problems, make_toy_data, split_combos
from rdpt.toy.tokenizer import TokenizerSpec, train_tokenizer
from rdpt.toy.world import sampled_accuracy, tokenizer_texts
from rdpt.training.sft import sft

ALT_STYLE = Style(
    plans=("Goal: find how many {o} {n} ends up with.", "Track the {o} with one line per change."),
    p_plan=0.7,
    start="- Start: {s} {o}.",
    p_start=0.9,
    verbose_step="- {clause}: {a} {op} {k} = {b}.",
    terse_step="Now {a} {op} {k} = {b}.",  # the toy teacher's and student's terse step: generic phrasing
    p_verbose=0.7,
    verify="In one line: {chain} = {ans}.",
    p_verify=0.6,
    ending="So {n} has {ans} {o} in the end.",
    p_ending=0.8,
)

# No BOS, GPT-2's end-of-text token, plain-text section headers as the chat template.
ALT_TOKENIZER = TokenizerSpec(
    eos="<|endoftext|>",
    pad="<|padding|>",
    bos=None,
    extra_special=(),
    chat_template=(
        "{% for message in messages %}"
        "{% if message['role'] == 'user' %}### Problem\n{{ message['content'] }}\n\n"
        "{% elif message['role'] == 'assistant' %}### Solution\n{{ message['content'] }}{{ eos_token }}\n"
        "{% endif %}"
        "{% endfor %}"
        "{% if add_generation_prompt %}### Solution\n{% endif %}"
    ),
)


def build_gpt2(tokenizer, *, layers: int, hidden: int, heads: int, context: int, seed: int):
    """A freshly initialised tiny GPT-2 (float32, no dropout: training is deterministic) sized to the tokenizer."""
    from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=context, n_embd=hidden, n_layer=layers, n_head=heads,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        # GPT-2 has no BOS of its own: like the original, its end-of-text token doubles as one
        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = GPT2LMHeadModel(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return model


def toy_teacher_alt(params: ToyAltParams, toy_seed: int, n_test_questions: int, out_dir: str | Path,
                      device="cpu") -> dict:
    """Train the alt teacher and save it to ``<out_dir>/teacher``; return the build report.

    ``toy_seed`` / ``n_test_questions`` are the toy world's (``toy.seed``, ``toy.n_test_questions``): its corpus
    comes from the same train combinations, and its accuracy is measured on the same two benchmarks. Built in a
    sibling temporary folder renamed into place, so an interrupted build leaves nothing half-trained.
    """
    t0 = time.perf_counter()
    final = Path(out_dir)
    out = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(out, ignore_errors=True)
    train_combos, _ = split_combos(toy_seed)
    problems = make_problems(random.Random(f"{params.seed}-corpus-alt"), train_combos, params.corpus)
    rng = random.Random(f"{params.seed}-solutions-alt")
    pairs = [(p.question(), ALT_STYLE.solve(p, rng)) for p in problems]
    tokenizer = train_tokenizer(tokenizer_texts(ALT_TOKENIZER, pairs), params.vocab, ALT_TOKENIZER, params.context)
    model = build_gpt2(tokenizer, layers=params.layers, hidden=params.hidden, heads=params.heads,
                       context=params.context, seed=params.seed).to(device)
    examples = [{"prompt": render_prompt(tokenizer, q), "response": s} for q, s in pairs]
    train = TrainParams(max_steps=params.steps, learning_rate=params.learning_rate, batch_size=params.batch_size,
                        warmup_ratio=params.warmup_ratio, weight_decay=0.0, lr_scheduler="cosine")
    with tempfile.TemporaryDirectory(prefix="rdpt-toy-alt-") as tmp:
        stats = sft(model, tokenizer, examples, train, output_dir=tmp, seed=params.seed)
    model_dir = out / "teacher"
    model_dir.mkdir(parents=True)
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    curve = stats["train_loss_curve"]
    report = {
        "arch": "gpt2", "params": model.num_parameters(), "vocab": len(tokenizer), "corpus": len(pairs),
        "steps": stats["steps"], "train_wall_s": stats["wall_s"],
        "first_loss": curve[0][1] if curve else None, "final_loss": curve[-1][1] if curve else None,
        "tokens": stats["tokens"], "n_dropped": stats["n_dropped"],
    }
    # The toy world's own benchmarks, rebuilt from its seed (make_toy_data draws them first, before any
    # train question), sampled from the SAVED model as every later stage loads it.
    benchmarks = make_toy_data(toy_seed, 0, n_test_questions, {}).benchmarks
    eval_params = ToyParams(seed=params.seed, eval_max_new_tokens=params.eval_max_new_tokens)
    t_eval = time.perf_counter()
    acc = sampled_accuracy(model_dir, benchmarks, eval_params, device)
    report["accuracy"] = {b: a["accuracy"] for b, a in acc.items()}
    report["stopped"] = {b: a["stopped"] for b, a in acc.items()}
    report["eval_wall_s"] = round(time.perf_counter() - t_eval, 2)
    report["wall_s"] = round(time.perf_counter() - t0, 2)
    shutil.rmtree(final, ignore_errors=True)
    out.rename(final)
    return report

"""Teacher identification: the test statistic on worlds with a known answer, params, and the steps on tiny models."""

import json
import random
from pathlib import Path

import numpy as np
import pytest
import yaml

from rdpt import RdptError
from rdpt.analysis.identify import compare, identify
from rdpt.analysis.identify_score import identify_score
from rdpt.io.artifacts import read_table
from rdpt.params import ToyAltParams, parse_params
from rdpt.presets import merge

ROOT = Path(__file__).resolve().parents[1]


def _world(n_questions: int, per_question: int, effect: float, seed: int, question_sd: float = 0.15):
    """Per-response Teacher shares of two candidates: `effect` = true mean lead of the first. Each question has
    its own difficulty, shared by both candidates and all its responses (responses are not independent)."""
    rng = np.random.default_rng(seed)
    q = np.repeat(np.arange(n_questions), per_question)
    level = rng.normal(0.5, question_sd, n_questions)[q]
    a = level + effect / 2 + rng.normal(0, 0.1, len(q))
    b = level - effect / 2 + rng.normal(0, 0.1, len(q))
    return np.clip(np.column_stack([a, b]), 0, 1), [f"q{i}" for i in q]


# ---------------------------------------------------------------------------------------------- statistic
def test_the_real_teacher_wins_with_a_ci_above_zero():
    shares, questions = _world(60, 4, effect=0.1, seed=0)
    r = compare(shares, questions, ["teacher", "other"], 1000, 2000, 0)
    assert r["best"] == "teacher" and r["runner_up"] == "other" and r["identified"] is True
    assert r["lead"]["diff"] == pytest.approx(shares[:, 0].mean() - shares[:, 1].mean())
    assert 0 < r["lead"]["ci_low"] < r["lead"]["diff"] < r["lead"]["ci_high"]
    assert r["lead"]["p"] == pytest.approx(1 / 2001)  # no sign flip reaches the observed lead: the minimum
    assert r["lead"] == {k: r["pairs"]["teacher-vs-other"][k] for k in ("diff", "ci_low", "ci_high", "p")}
    t = r["candidates"]["teacher"]
    assert t["teacher_share"] == pytest.approx(shares[:, 0].mean()) and t["ci_low"] < t["teacher_share"] < t["ci_high"]


def test_identical_candidates_are_not_told_apart():
    shares, questions = _world(40, 4, effect=0.0, seed=1)
    same = np.column_stack([shares[:, 0], shares[:, 0]])
    r = compare(same, questions, ["a", "b"], 500, 1000, 0)
    assert r["lead"]["diff"] == 0 and r["lead"]["ci_low"] <= 0 <= r["lead"]["ci_high"]
    assert r["lead"]["p"] == 1.0 and r["identified"] is False
    assert r["best"] == "a"  # a tie goes to the candidate named first


def test_sign_flips_keep_their_level_when_questions_cluster():
    """Under the null (no lead; a question-level nuisance common to its 8 responses), p < 0.05 about 5% of the
    time. Flipping responses one by one would ignore the clustering and reject far more often."""
    by_question, by_response = [], []
    for seed in range(300):
        rng = np.random.default_rng(seed)
        q = np.repeat(np.arange(30), 8)
        nuisance = rng.normal(0, 0.2, 30)[q]  # one question favours a, another b: symmetric, no lead overall
        a = 0.5 + nuisance / 2 + rng.normal(0, 0.02, len(q))
        b = 0.5 - nuisance / 2 + rng.normal(0, 0.02, len(q))
        shares = np.column_stack([a, b])
        by_question.append(compare(shares, q, ["a", "b"], 0, 400, seed)["lead"]["p"])
        by_response.append(compare(shares, np.arange(len(q)), ["a", "b"], 0, 400, seed)["lead"]["p"])
    rate = np.mean(np.array(by_question) < 0.05)
    assert 0.02 <= rate <= 0.09, rate
    assert np.mean(np.array(by_response) < 0.05) > 0.3  # every response its own "question": ~50% false alarms


def test_three_candidates_best_named_later_gets_the_lead_turned_around():
    shares, questions = _world(50, 4, effect=0.15, seed=2)
    third = np.clip(shares[:, 1] - 0.2, 0, 1)
    three = np.column_stack([shares[:, 1], shares[:, 0], third])  # the real teacher is named second
    r = compare(three, questions, ["other", "teacher", "third"], 500, 1000, 0)
    assert (r["best"], r["runner_up"]) == ("teacher", "other") and r["identified"] is True
    pair = r["pairs"]["other-vs-teacher"]
    assert r["lead"]["diff"] == pytest.approx(-pair["diff"]) and r["lead"]["p"] == pair["p"]
    assert (r["lead"]["ci_low"], r["lead"]["ci_high"]) == pytest.approx((-pair["ci_high"], -pair["ci_low"]))
    assert set(r["pairs"]) == {"other-vs-teacher", "other-vs-third", "teacher-vs-third"}


def test_few_questions_give_an_honest_p_and_no_identification():
    """Three questions: 2^3 sign patterns, so p cannot go below 2/8 however large the lead looks."""
    shares = np.array([[0.9, 0.2], [0.8, 0.3], [0.7, 0.1], [0.9, 0.4]])
    r = compare(shares, ["q1", "q1", "q2", "q3"], ["teacher", "other"], 200, 2000, 0)
    assert r["lead"]["diff"] == pytest.approx(0.575) and r["lead"]["p"] > 0.2 and r["identified"] is False
    single = compare(shares, ["q"] * 4, ["teacher", "other"], 200, 100, 0)
    assert np.isnan(single["lead"]["ci_low"]) and single["n_questions"] == 1  # no bootstrap over one question


def test_compare_is_deterministic_and_needs_two_candidates():
    shares, questions = _world(20, 3, effect=0.05, seed=3)
    assert compare(shares, questions, ["a", "b"], 200, 500, 7) == compare(shares, questions, ["a", "b"], 200, 500, 7)
    with pytest.raises(RdptError, match="2 candidates"):
        compare(shares[:, :1], questions, ["a"], 10, 10, 0)


# ------------------------------------------------------------------------------------------------- params
def _params(**identify):
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["identify"] = {**data["identify"], **identify}
    return parse_params(data, "params.yaml")


def test_params_candidates_shorthand_and_validation():
    p = _params()
    assert list(p.identify.candidates) == ["teacher", "alt_teacher"]
    assert p.identify.candidates["alt_teacher"].path == "data/toy_alt/teacher"
    full = _params(candidates={"r1": {"path": "org/r1", "revision": "abc"}, "qwq": "org/qwq"})
    assert full.identify.candidates["r1"].revision == "abc" and full.identify.candidates["qwq"].path == "org/qwq"
    for candidates, message in (
        ({"only": "org/a"}, "at least two"),
        ({"a": "org/a", "b.c": "org/b"}, "candidate name 'b.c'"),
        ({"a": "org/a", "b": "org/a"}, "'a' and 'b' name the same model"),
        ({"a": "org/a", "b": {"path": None}}, "candidate 'b': path is required"),
        ({"a": "org/a", "b": {"path": "org/b", "typo": 1}}, "unknown key"),
    ):
        with pytest.raises(RdptError) as err:
            _params(candidates=candidates)
        text = str(err.value)
        assert text.startswith("params.yaml: identify.candidates") and message in text and "\n" not in text
    with pytest.raises(RdptError, match="identify.n_permutations"):
        _params(n_permutations=-1)
    # same path, another chat template: two different candidates
    _params(candidates={"a": "org/a", "b": {"path": "org/a", "chat_template": "{{ x }}"}})


def test_a_preset_replaces_the_candidates_whole():
    merged = merge(yaml.safe_load((ROOT / "params.yaml").read_text()),
                   {"identify": {"candidates": {"r1": "deepseek-ai/DeepSeek-R1", "qwq": "Qwen/QwQ-32B"}}})
    assert list(merged["identify"]["candidates"]) == ["r1", "qwq"]  # the toy candidates are gone
    assert merged["identify"]["n_permutations"] == 10000


def test_toy_alt_params_validation():
    with pytest.raises(ValueError, match="multiple of heads"):
        ToyAltParams(hidden=30, heads=4)


# -------------------------------------------------------------------------------------- steps, tiny models
TEACHER_TEMPLATE = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}<u>{{ m['content'] }}\n"
                    "{% endif %}{% endfor %}{% if add_generation_prompt %}<a>\n{% endif %}")
PLAIN_TEMPLATE = ("{% for m in messages %}{% if m['role'] == 'user' %}Q: {{ m['content'] }}\n{% endif %}{% endfor %}"
                  "{% if add_generation_prompt %}A:\n{% endif %}")


@pytest.fixture(scope="module")
def traced(tmp_path_factory, tiny_lm_factory):
    """A tiny world: teacher, student, distilled (random tiny LMs), a GPT-2 alt candidate with the alt teacher's
    own tokenizer and template, 12 traced responses to 6 questions, scored under S, D and T."""
    from rdpt.models import resolve_device, role_ref
    from rdpt.provenance.score import score
    from rdpt.provenance.segment import segment
    from rdpt.toy.alt import ALT_STYLE, ALT_TOKENIZER, build_gpt2
    from rdpt.toy.styles import STYLES
    from rdpt.toy.task import make_toy_data
    from rdpt.toy.tokenizer import train_tokenizer
    from rdpt.toy.world import tokenizer_texts

    root = tmp_path_factory.mktemp("identify")
    data = make_toy_data(0, 0, 6, {"c": 40})
    rng = random.Random(0)
    corpus = [STYLES["teacher"].solve(p, rng) for p in data.corpora["c"]]
    teacher = tiny_lm_factory("id-teacher", corpus, chat_template=TEACHER_TEMPLATE, seed=1)
    student = tiny_lm_factory("id-student", corpus, chat_template=PLAIN_TEMPLATE, bos=False, seed=2)
    distilled = tiny_lm_factory("id-distilled", corpus, chat_template=PLAIN_TEMPLATE, bos=False, seed=3)
    pairs = [(p.question(), ALT_STYLE.solve(p, rng)) for p in data.corpora["c"]]
    alt_tok = train_tokenizer(tokenizer_texts(ALT_TOKENIZER, pairs), 300, ALT_TOKENIZER, 512)
    alt = root / "alt"
    model = build_gpt2(alt_tok, layers=1, hidden=32, heads=2, context=512, seed=0)
    model.save_pretrained(alt)
    alt_tok.save_pretrained(alt)

    rows = []
    for i, p in enumerate(data.benchmarks["toy_easy"]):
        for k in range(2):
            text = STYLES["teacher"].solve(p, rng) if k == 0 else ALT_STYLE.solve(p, rng)
            rows.append({"response_id": f"toy_easy/{i}/{k}", "benchmark": "toy_easy", "question_id": str(i),
                         "sample_idx": k, "question": p.question(), "answer": str(p.answer), "text": text,
                         "finish_reason": "stop", "n_tokens": 10})
    gens = root / "distilled.jsonl"
    gens.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = yaml.safe_load((ROOT / "params.yaml").read_text())
    cfg["device"] = "cpu"
    cfg["models"]["teacher"] = {"path": teacher}
    cfg["models"]["student"] = {"path": student}
    cfg["identify"]["candidates"] = {"teacher": teacher, "alt": str(alt),
                                     "alt_plain": {"path": str(alt), "chat_template": PLAIN_TEMPLATE}}
    params = parse_params(cfg)
    assert resolve_device(params.device)[0].type == "cpu"
    sents = root / "sentences.parquet"
    segment(params, str(gens), str(sents), str(root / "empty.parquet"))
    for role, path in (("teacher", teacher), ("student", student), ("distilled", distilled)):
        score(params, role_ref(params, role, path), role, str(gens), str(sents), str(root / "scores" / role),
              journal_dir=str(root / "j"))
    (root / "calibration.json").write_text(json.dumps({"alpha_used": 0.1, "beta_used": 0.1}))
    return params, root


@pytest.fixture(scope="module")
def candidates(traced):
    params, root = traced
    out = root / "identify" / "scores"
    for name in params.identify.candidates:
        identify_score(params, name, str(root / "distilled.jsonl"), str(root / "sentences.parquet"), str(out / name),
                        teacher_scores=str(root / "scores" / "teacher"), journal_dir=str(root / "j"))
    return out


def test_score_candidate_reuses_the_teacher_and_scores_the_others(traced, candidates):
    params, root = traced
    out = candidates
    teacher = root / "scores" / "teacher"
    assert (out / "teacher" / "scores.parquet").read_bytes() == (teacher / "scores.parquet").read_bytes()
    assert json.loads((out / "teacher" / "cost.json").read_text())["reused"] == str(teacher)
    sents = read_table(root / "sentences.parquet", "sentences")
    alt = read_table(out / "alt" / "scores.parquet", "scores")
    plain = read_table(out / "alt_plain" / "scores.parquet", "scores")
    ref = read_table(teacher / "scores.parquet", "scores")
    assert len(alt) == len(plain) == len(sents) == len(ref)
    assert json.loads((out / "alt" / "cost.json").read_text())["model"] == "alt"
    assert not np.array_equal(alt["n_tokens"], ref["n_tokens"])  # its own tokenizer
    # the candidate's own chat template is the context: same model and text, another prompt, other log-probs
    assert np.array_equal(alt["n_tokens"], plain["n_tokens"])
    assert not np.allclose(alt["mean_logprob"], plain["mean_logprob"])
    with pytest.raises(RdptError, match="no candidate 'nope'"):
        identify_score(params, "nope", "g", "s", str(out / "nope"))


def test_identify_writes_reports_consistent_with_classify(traced, candidates):
    from rdpt.provenance.classify import classify

    params, root = traced
    cands = candidates

    def run(tag):
        return identify(params, str(root / "sentences.parquet"), str(root / "distilled.jsonl"),
                        str(root / "scores" / "student"), str(root / "scores" / "distilled"), str(cands),
                        str(root / "calibration.json"), str(root / f"out{tag}"), str(root / f"m{tag}.json"))

    payload = run(1)
    bench = payload["identify"]["toy_easy"]
    assert bench["n_responses"] == 12 and bench["n_questions"] == 6
    assert set(bench["candidates"]) == {"teacher", "alt", "alt_plain"}
    assert set(bench["pairs"]) == {"teacher-vs-alt", "teacher-vs-alt_plain", "alt-vs-alt_plain"}
    assert bench["best"] in bench["candidates"] and set(bench["lead"]) == {"diff", "ci_low", "ci_high", "p"}
    assert payload["thresholds"] == {"alpha": 0.1, "beta": 0.1}
    # the candidate that is models.teacher, under classify's rule: exactly classify's Teacher share
    classified = classify(params, str(root / "sentences.parquet"),
                          {r: str(root / "scores" / r) for r in ("teacher", "student", "distilled")},
                          str(root / "classified.parquet"))
    assert (classified["cls"] != "Unscored").all() and len(classified) == bench["n_sentences"]
    assert bench["candidates"]["teacher"]["teacher_share_pooled"] == pytest.approx(
        (classified["cls"] == "Teacher").mean())
    md = (root / "out1" / "identify.md").read_text()
    assert "| toy_easy | `teacher`" in md and "Every pair" in md
    assert (root / "out1" / "teacher_share.png").stat().st_size > 1000
    # the same inputs write the same bytes (figure included)
    run(2)
    for name in ("identify.md", "teacher_share.png"):
        assert (root / "out1" / name).read_bytes() == (root / "out2" / name).read_bytes()
    assert (root / "m1.json").read_text() == (root / "m2.json").read_text()


def test_identify_names_a_missing_candidate(traced, tmp_path):
    params, root = traced
    with pytest.raises(RdptError, match=r"teacher/scores.parquet: not found .*identify_score@teacher"):
        identify(params, str(root / "sentences.parquet"), str(root / "distilled.jsonl"),
                 str(root / "scores" / "student"), str(root / "scores" / "distilled"), str(tmp_path / "none"),
                 str(root / "calibration.json"), str(tmp_path / "out"), str(tmp_path / "m.json"))


def test_micro_alt_teacher_builds_and_loads_like_a_hub_model(tmp_path):
    from rdpt.models import load_model, load_tokenizer, render_prompt
    from rdpt.toy.alt import toy_teacher_alt

    micro = ToyAltParams(corpus=40, vocab=300, layers=1, hidden=32, heads=2, steps=2, batch_size=8,
                         eval_max_new_tokens=4)
    report = toy_teacher_alt(micro, 0, 3, tmp_path / "toy_alt")
    assert report["arch"] == "gpt2" and report["steps"] == 2 and report["corpus"] == 40
    assert set(report["accuracy"]) == {"toy_easy", "toy_hard"}
    folder = str(tmp_path / "toy_alt" / "teacher")
    tok = load_tokenizer(folder)
    assert render_prompt(tok, "Ana has 7 apples.") == "### Problem\nAna has 7 apples.\n\n### Solution\n"
    import torch

    model = load_model(folder, torch.device("cpu"), torch.float32)
    assert model.config.model_type == "gpt2" and model.config.vocab_size == len(tok)
    assert not (tmp_path / ".toy_alt.tmp").exists()

"""Paper presets (configs/*.yaml): each merges over params.yaml and validates like the pipeline's params, and
every dataset a preset names loads from a small local file shaped like the real one and grades."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from rdpt import RdptError
from rdpt.generation.grade import grade
from rdpt.io.data import load_questions
from rdpt.params import load_params
from rdpt.presets import compose, main, merge, presets

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = ROOT / "params.yaml"
FIXTURES = ROOT / "tests" / "fixtures"
PRESETS = presets(ROOT / "configs")
# Paper presets name hub models and datasets (checked against local fixtures of their real columns); a local preset
# (configs/real-cpu.yaml: real weights installed from package registries into local folders) is checked apart.
PAPER = [p for p in PRESETS if "/" in str(yaml.safe_load(p.read_text())["models"]["teacher"]["path"]).strip("./")
         and not str(yaml.safe_load(p.read_text())["models"]["teacher"]["path"]).startswith("data/")]
LOCAL = [p for p in PRESETS if p not in PAPER]

# (hub id, config name) -> a local file with the real dataset's columns and answer formats (rows written for tests)
FIXTURE_OF = {
    ("HuggingFaceH4/aime_2024", None): "aime_2024.jsonl",
    ("MathArena/aime_2025", None): "aime_2025.jsonl",
    ("HuggingFaceH4/MATH-500", None): "math500.jsonl",
    ("Idavidrein/gpqa", "gpqa_diamond"): "gpqa_diamond.jsonl",
    ("Hothan/OlympiadBench", "OE_TO_maths_en_COMP"): "olympiadbench.jsonl",  # final_answer: a list of parts
    ("nvidia/AceReason-1.1-SFT", None): "acereason_sft.jsonl",  # selection candidates: no gold-answer column
}

# per fixture: question id -> (a right response, a wrong one), written the way reasoning models end theirs
RESPONSES = {
    "aime_2024.jsonl": {
        "60": (r"Every divisor of 100 below 100 works, so there are $\boxed{8}$ pairs.", r"So $\boxed{9}$."),
        "61": (r"$S = 71500$, so the remainder is $\boxed{500}$.", r"The remainder is $\boxed{71500}$."),
        "62": ("The probability is 31/66, so m + n = 97.\n\n**Final Answer**\n\\[\n\\boxed{97}\n\\]", r"\boxed{66}"),
    },
    "aime_2025.jsonl": {
        "1": (r"$4095 = 3^2 \cdot 5 \cdot 7 \cdot 13$, so the answer is $\boxed{13}$.", r"$\boxed{7}$"),
        "2": (r"$720 = 2^4 \cdot 3^2 \cdot 5$ has $5 \cdot 3 \cdot 2 = \boxed{30}$ divisors.", r"$\boxed{24}$"),
        "3": (r"The sides are 10, 24, 26, so the area is $\boxed{120}$.", r"The area is $\boxed{240}$."),
        "4": (r"$10^{10}$ is a multiple of $2^{10}$, so the remainder is $\boxed{0}$.", r"$\boxed{2}$"),
    },
    "math500.jsonl": {
        "test/precalculus/fixture-1.json": (r"So $(r, \theta) = \boxed{(3, \frac{\pi}{2})}$.", r"$\boxed{(3, \pi)}$"),
        "test/algebra/fixture-2.json": (r"$x = \boxed{\dfrac{14}{3}}$", r"$x = \boxed{\frac{7}{3}}$"),
        "test/prealgebra/fixture-3.json": (r"The original price was $\boxed{\$50}$.", r"$\boxed{\$48}$"),
        "test/prealgebra/fixture-4.json": (r"It is $\boxed{\text{Monday}}$.", r"$\boxed{\text{Sunday}}$"),
        "test/algebra/fixture-5.json": (r"$x \in \boxed{[-2, 7]}$", r"$x \in \boxed{[-7, 2]}$"),
    },
}
# multi-answer items (2003-2005): right only with every part; one part of two, or a part too many, is wrong
RESPONSES["olympiadbench.jsonl"] = {
    "2001": (r"So $n = \boxed{3}$.", r"So $n = \boxed{2}$."),
    "2002": ("</think>\n\nThe altitude is $\\boxed{1}$.", r"The altitude is $\boxed{\sqrt{3}}$."),
    "2003": (r"The roots are $\boxed{3, 2}$.", r"The roots are $\boxed{2}$."),
    "2004": (r"The pairs are $\boxed{(1,2)}$ and $\boxed{(2,1)}$.", r"$\boxed{(1,2), (2,1), (2,2)}$"),
    "2005": (r"$k \in \boxed{1, 3}$", r"$\boxed{1, 2}$"),
}
# GPQA golds are the letters the adapter gives the right options: fixed by the record ids, so fixed forever
GPQA_GOLD = {"recQx7Lm2Pa9TfZ1c": "D", "recB4wNe8Kd3JhR0v": "A", "recT9sGv1Yc6MnE2u": "A", "recH2kDp5Wr8ZaL4x": "C"}
RESPONSES["gpqa_diamond.jsonl"] = {
    rid: (f"The answer is ({gold}).", rf"\boxed{{{'B' if gold != 'B' else 'C'}}}") for rid, gold in GPQA_GOLD.items()
}


def _benchmarks():
    for preset in PAPER:
        _, params = compose(preset, DEFAULTS)
        for name, spec in params.data.benchmarks.items():
            yield pytest.param(spec, id=f"{preset.stem}:{name}")


def test_the_paper_presets_are_there():
    assert {p.stem for p in PRESETS} >= {"r1-distill-qwen-7b", "r1-0528-qwen3-8b", "selection-acereason-qwen3-4b",
                                         "limo-v2"}


@pytest.mark.parametrize("preset", PAPER, ids=lambda p: p.stem)
def test_preset_merges_over_the_defaults_and_validates(preset):
    merged, params = compose(preset, DEFAULTS)
    raw = yaml.safe_load(preset.read_text())
    # a preset is partial: the defaults fill the rest, and what it names wins
    assert merged["toy"] == yaml.safe_load(DEFAULTS.read_text())["toy"]
    assert set(params.data.benchmarks) == set(raw["data"]["benchmarks"])  # replaced whole, no toy benchmark left
    for role in ("teacher", "student"):
        assert getattr(params.models, role).path == raw["models"][role]["path"]
        assert re.fullmatch(r"[\w.-]+/[\w.-]+", getattr(params.models, role).path)  # a hub id, not a local folder
    datasets = list(params.data.benchmarks.values())
    if params.select.candidates.source == "dataset" and "select" in raw:
        datasets.append(params.select.candidates.dataset)
    for spec in datasets:
        assert (spec.path, spec.name) in FIXTURE_OF, f"no local fixture for {spec.path} ({spec.name})"


@pytest.mark.parametrize("spec", list(_benchmarks()))
def test_every_preset_dataset_loads_from_a_fixture_like_it_and_grades(spec):
    fixture = FIXTURE_OF[(spec.path, spec.name)]
    local = spec.model_copy(update={"path": str(FIXTURES / fixture)})  # same fields, split and config ignored
    questions = load_questions(local)
    responses = RESPONSES[fixture]
    assert [q.id for q in questions] == list(responses)
    for q in questions:
        right, wrong = responses[q.id]
        assert grade(q.gold, right) is True, (q.id, q.gold, right)
        assert grade(q.gold, wrong) is False, (q.id, q.gold, wrong)
        if spec.prompt_template:
            head, tail = spec.prompt_template.split("{question}")
            assert q.question.startswith(head) and q.question.endswith(tail)


def _candidate_datasets():
    for preset in PRESETS:
        raw = yaml.safe_load(preset.read_text())
        if raw.get("select", {}).get("candidates", {}).get("source") == "dataset":
            yield pytest.param(compose(preset, DEFAULTS)[1].select.candidates.dataset, id=preset.stem)


@pytest.mark.parametrize("spec", list(_candidate_datasets()))
def test_candidate_dataset_loads_from_a_fixture_like_it(spec):
    from rdpt.generation.grade import extract_answer
    from rdpt.io.data import load_candidates

    fixture = FIXTURE_OF[(spec.path, spec.name)]
    candidates = load_candidates(spec.model_copy(update={"path": str(FIXTURES / fixture)}))
    # rows sharing an input are one question's candidates, in file order; the code row is filtered out (ids stay
    # the file's row numbers)
    assert [(c.question_id, c.sample_idx) for c in candidates] == [("0", 0), ("0", 1), ("2", 0)]
    assert {c.source for c in candidates} == {"fixture_math"}
    assert all(c.response.startswith("<think>\n") for c in candidates)
    # pseudo-gold: each row's own last box after </think>
    assert [c.answer for c in candidates] == [extract_answer(c.response) for c in candidates] == ["720", "720", "1"]
    everything = load_candidates(spec.model_copy(update={"path": str(FIXTURES / fixture), "filter": None}))
    assert [(c.source, c.answer) for c in everything][3:] == [("fixture_code", "")]  # code: no final answer


def test_presets_per_benchmark_samples_and_r1_sampling():
    for preset in PAPER:
        _, params = compose(preset, DEFAULTS)
        k = {name: spec.num_samples for name, spec in params.data.benchmarks.items()}
        assert all(k[b] == 16 for b in k if b.startswith("aime")), preset
        assert k.get("math500", 4) == 4 and k.get("gpqa_diamond", 8) == 8 and k["olympiadbench"] == 4, preset
        assert (params.generate.temperature, params.generate.top_p) == (0.6, 0.95), preset
        if params.models.teacher.path.startswith("deepseek-ai/") and params.models.distilled.path is not None:
            assert params.generate.max_new_tokens == 32768, preset


def test_limo_v2_preset():
    _, params = compose(ROOT / "configs" / "limo-v2.yaml", DEFAULTS)
    limo = "Please reason step by step, and put your final answer within \\boxed{}."
    assert (params.models.student.path, params.models.distilled.path) == ("Qwen/Qwen2.5-32B-Instruct", "GAIR/LIMO-v2")
    assert params.models.student.system_prompt == params.models.distilled.system_prompt == limo
    assert params.models.teacher.system_prompt is None
    for role in ("student", "distilled"):  # full-length traces fit the YaRN-stretched window
        overrides = getattr(params.models, role).config_overrides
        assert overrides["max_position_embeddings"] >= params.generate.max_new_tokens + 1024


def _gpqa_spec():
    _, params = compose(ROOT / "configs" / "r1-distill-qwen-7b.yaml", DEFAULTS)
    spec = params.data.benchmarks["gpqa_diamond"]
    return spec.model_copy(update={"path": str(FIXTURES / "gpqa_diamond.jsonl")})


def test_gpqa_options_shuffled_once_each_gold_letter_right_and_stable():
    import json

    rows = {r["Record ID"]: r for r in map(json.loads, (FIXTURES / "gpqa_diamond.jsonl").read_text().splitlines())}
    first, again = load_questions(_gpqa_spec()), load_questions(_gpqa_spec())
    assert [(q.question, q.answer) for q in first] == [(q.question, q.answer) for q in again]
    assert {q.id: q.answer for q in first} == GPQA_GOLD  # the same letters as in every earlier run
    for q in first:
        options = dict(re.findall(r"^([A-Z])\) (.*)$", q.question, flags=re.M))
        row = rows[q.id]
        answers = [row[c].strip() for c in ("Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2",
                                            "Incorrect Answer 3")]
        assert list(options) == ["A", "B", "C", "D"]
        assert sorted(options.values()) == sorted(answers)  # all four answers, each once
        assert options[q.answer] == answers[0]  # the gold letter points at the correct answer
        assert row["Question"].strip() in q.question


def test_merge_rules():
    defaults = {"a": {"x": 1, "y": [1, 2], "z": {"k": 1}}, "data": {"benchmarks": {"toy": {"path": "t"}},
                                                                   "train": {"path": "p", "limit": 3}}}
    preset = {"a": {"y": [3], "z": {"j": 2}}, "data": {"benchmarks": {"real": {"path": "r"}}, "train": {"limit": None}}}
    merged = merge(defaults, preset)
    assert merged == {"a": {"x": 1, "y": [3], "z": {"k": 1, "j": 2}},
                      "data": {"benchmarks": {"real": {"path": "r"}}, "train": {"path": "p", "limit": None}}}
    assert defaults["data"]["benchmarks"] == {"toy": {"path": "t"}} and "j" not in defaults["a"]["z"]  # untouched


def test_unknown_key_in_a_preset_is_an_error_naming_preset_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("generate:\n  temprature: 0.6\n")
    with pytest.raises(RdptError) as err:
        compose(bad, DEFAULTS)
    assert str(err.value).startswith(f"{bad} (over {DEFAULTS}): generate.temprature: unknown key")


def test_apply_writes_the_merged_params_atomically_and_guards_against_stacking(tmp_path):
    base = tmp_path / "params.yaml"
    base.write_text(DEFAULTS.read_text())
    first, second = (str(p) for p in PRESETS[:2])
    runner = CliRunner()

    result = runner.invoke(main, ["apply", first, "--base", str(base)])
    assert result.exit_code == 0, result.output
    written = base.read_text()
    assert written.startswith(f"# rdpt-preset: {first}\n")
    assert load_params(base) == compose(first, DEFAULTS)[1]  # what DVC runs = preset over the defaults
    assert runner.invoke(main, ["apply", first, "--base", str(base)]).exit_code == 0  # same preset: idempotent
    assert base.read_text() == written

    result = runner.invoke(main, ["apply", second, "--base", str(base)])  # another preset over the first: refused
    assert result.exit_code == 1 and f"already made from preset {first}" in result.output
    assert base.read_text() == written
    result = runner.invoke(main, ["check", second, "--base", str(base)])  # checking one over it too
    assert result.exit_code == 1 and f"already made from preset {first}" in result.output

    bad = tmp_path / "bad.yaml"
    bad.write_text("classify:\n  beta: 2\n")
    result = runner.invoke(main, ["apply", str(bad), "--base", str(DEFAULTS), "--out", str(base)])
    assert result.exit_code == 1 and "classify.beta" in result.output and result.output.count("\n") == 1
    assert base.read_text() == written and sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml", "params.yaml"]


def test_python_m_checks_every_preset():
    out = subprocess.run([sys.executable, "-m", "rdpt.presets", "check"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [f"configs/{p.name}: ok" for p in PRESETS]


@pytest.mark.parametrize("preset", LOCAL, ids=lambda p: p.stem)
def test_local_presets_validate_and_name_local_models(preset):
    _, params = compose(preset, DEFAULTS)
    for role in ("teacher", "student"):
        assert getattr(params.models, role).path.startswith("data/")  # built locally, never a hub id
    assert params.data.benchmarks and all(spec.path.startswith("data/") for spec in params.data.benchmarks.values())

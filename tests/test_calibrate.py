"""rdpt.provenance.calibrate: the noise floor, alpha/beta: auto, the beta sweep; their params and pipeline wiring."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from rdpt import RdptError
from rdpt.params import parse_params
from rdpt.provenance.calibrate import (
    ceil_significant,
    noise_floor,
    pick_responses,
    replicate_dtype,
    rescore_replicates,
    resolve_thresholds,
)
from rdpt.provenance.classify import beta_sweep
from rdpt.provenance.rules import CLASSES, classify_frame
from rdpt.provenance.rules import label as classify

ROOT = Path(__file__).resolve().parents[1]
ROLES = ("teacher", "student", "distilled")


def _params(**sections):
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in sections.items():
        data[section].update(values)
    return parse_params(data, "params.yaml")


# ------------------------------------------------------------------------------------------------ params
def test_defaults_are_the_papers():
    params = _params()
    assert (params.classify.alpha, params.classify.beta) == (0.1, 0.1)  # auto is opt-in
    assert 0.1 in params.classify.beta_grid and params.classify.noise_quantile == 0.95
    assert (params.correlate.n_bootstrap, params.correlate.n_permutations) == (1000, 1000)
    assert params.correlate.reference == "Teacher" and params.correlate.permutation == "within_question"


def test_auto_and_numbers_are_accepted():
    params = _params(classify={"alpha": "auto", "beta": "auto"})
    assert (params.classify.alpha, params.classify.beta) == ("auto", "auto")
    assert _params(classify={"alpha": 0, "beta": 1}).classify.alpha == 0.0


@pytest.mark.parametrize(
    "section, values, message",
    [
        ("classify", {"alpha": "Auto"}, "classify.alpha: Input should be a number in [0, 1] or 'auto' (got 'Auto')"),
        ("classify", {"beta": 1.5}, "classify.beta: Input should be less than or equal to 1 (got 1.5)"),
        ("classify", {"alpha": -0.1}, "classify.alpha: Input should be greater than or equal to 0"),
        ("classify", {"alpha": True}, "classify.alpha: Input should be a number in [0, 1] or 'auto'"),
        ("classify", {"alpha": None}, "classify.alpha: Input should be a number in [0, 1] or 'auto'"),
        ("classify", {"beta_grid": []}, "classify.beta_grid: Value error, give at least one beta"),
        ("classify", {"beta_grid": [0.1, 0.05]}, "classify.beta_grid: Value error, must be strictly increasing"),
        ("classify", {"beta_grid": [0.0, 2.0]}, "classify.beta_grid: Value error, every beta must be in [0, 1]"),
        ("classify", {"noise_responses": -1}, "classify.noise_responses: Input should be greater than or equal to 0"),
        ("classify", {"noise_replicates": ["batch", "batch"]}, "classify.noise_replicates: Value error, a replicate"),
        ("classify", {"noise_replicates": ["fp8"]}, "classify.noise_replicates.0: Input should be 'batch' or"),
        ("classify", {"noise_replicates": []}, "classify.noise_replicates: List should have at least 1 item"),
        ("classify", {"noise_quantile": 0}, "classify.noise_quantile: Input should be greater than 0"),
        ("correlate", {"n_bootstrap": -5}, "correlate.n_bootstrap: Input should be greater than or equal to 0"),
        ("correlate", {"n_permutations": "many"}, "correlate.n_permutations: Input should be a valid integer"),
        ("correlate", {"permutation": "questions"}, "correlate.permutation: Input should be 'within_question' or"),
        ("correlate", {"reference": "Unscored"}, "correlate.reference: Input should be 'Shared', 'Teacher'"),
    ],
)
def test_bad_values_are_one_line_errors_naming_the_key(section, values, message):
    with pytest.raises(RdptError) as err:
        _params(**{section: values})
    text = str(err.value)
    assert text.startswith(f"params.yaml: {message}"), text
    assert "\n" not in text and "(+1 more)" not in text


# ------------------------------------------------------------------------------------------ building blocks
@pytest.mark.parametrize("x, expect", [(0.023412, 0.024), (0.024, 0.024), (1.167e-7, 1.2e-7), (0.0991, 0.1),
                                       (0.31, 0.31), (0.0, 0.0), (1.0, 1.0)])
def test_ceil_significant(x, expect):
    assert ceil_significant(x) == expect
    assert ceil_significant(x) >= x


def test_pick_responses_is_even_and_deterministic():
    ids = [f"b/{i:03d}/0" for i in range(100)][::-1]  # order of appearance does not matter
    picked = pick_responses(ids + ids, 5)
    assert picked == ["b/000/0", "b/025/0", "b/050/0", "b/074/0", "b/099/0"]
    assert pick_responses(ids, 500) == sorted(ids)
    assert pick_responses(ids, 0) == [] and pick_responses([], 3) == []


def test_replicate_dtype():
    assert replicate_dtype("float32") == "bfloat16"
    assert replicate_dtype("bfloat16") == replicate_dtype("float16") == "float32"


def _main_scores(p: dict[str, list[float]], rid="b/q0/0") -> pd.DataFrame:
    n = len(p["teacher"])
    out = {"response_id": [rid] * n, "benchmark": "b", "sentence_idx": list(range(n))}
    for role in ROLES:
        out[f"mean_logprob_{role}"] = np.log(p[role])
        out[f"n_tokens_{role}"] = 3
    return pd.DataFrame(out)


def _noise_table(main: pd.DataFrame, role: str, delta, replicate="precision") -> pd.DataFrame:
    p = np.exp(main[f"mean_logprob_{role}"].to_numpy()) + np.asarray(delta, float)
    return pd.DataFrame({"response_id": main["response_id"], "sentence_idx": main["sentence_idx"],
                         "replicate": replicate, "dtype": "bfloat16", "n_tokens": 3, "mean_logprob": np.log(p)})


def test_noise_floor_is_the_largest_pairwise_move():
    main = _main_scores({"teacher": [0.5, 0.6, 0.7], "student": [0.5, 0.4, 0.3], "distilled": [0.5, 0.5, 0.9]})
    deltas = {"teacher": [0.01, 0.0, -0.02], "student": [0.0, 0.005, 0.01], "distilled": [-0.01, 0.0, 0.0]}
    floor = noise_floor(main, {r: _noise_table(main, r, d) for r, d in deltas.items()})
    # sentence 0: |dT - dD| = 0.02; sentence 1: |dS - dT| = |dS - dD| = 0.005; sentence 2: |dT - dS| = 0.03
    np.testing.assert_allclose(floor["pairwise"], [0.02, 0.005, 0.03], atol=1e-12)
    np.testing.assert_allclose(floor["teacher_student"], [0.01, 0.005, 0.03], atol=1e-12)
    np.testing.assert_allclose(floor["delta_teacher"], deltas["teacher"], atol=1e-12)
    # a sentence unscored in a run (0 tokens) does not count; nothing re-scored -> empty
    unscored = _noise_table(main, "student", deltas["student"]).assign(n_tokens=[3, 0, 3])
    tables = {r: _noise_table(main, r, d) for r, d in deltas.items()} | {"student": unscored}
    assert noise_floor(main, tables)["sentence_idx"].tolist() == [0, 2]
    assert noise_floor(main, {}).empty


def test_resolve_thresholds():
    main = _main_scores({r: np.full(40, 0.5) for r in ROLES})
    moves = np.linspace(0.0005, 0.02, 40)  # pairwise noise = |dT - 0| = moves
    tables = {"teacher": _noise_table(main, "teacher", moves)} | {
        r: _noise_table(main, r, np.zeros(40)) for r in ("student", "distilled")}
    floor = noise_floor(main, tables)
    auto = resolve_thresholds("auto", "auto", floor, 0.95)
    q95 = np.quantile(moves, 0.95, method="higher")  # the 39th of 40 values, 0.0195
    assert auto["alpha_used"] == 0.02  # rounded up to two significant digits
    assert auto["beta_used"] == auto["alpha_used"]
    assert (auto["alpha_source"], auto["beta_source"]) == ("noise_floor", "alpha")
    assert auto["noise_floor"]["n_sentences"] == 40 and auto["noise_floor"]["by_replicate"]["batch"] is None
    fixed = resolve_thresholds(0.1, 0.05, floor, 0.95)
    assert (fixed["alpha_used"], fixed["beta_used"], fixed["alpha_source"]) == (0.1, 0.05, "param")
    assert fixed["noise_floor"]["quantile"] == pytest.approx(q95)  # reported even when not used
    assert resolve_thresholds(0.2, "auto", floor.iloc[:0], 0.95)["beta_used"] == 0.2
    # a second setup that moves nothing does not dilute the first: a sentence's noise is its largest move
    still = {r: _noise_table(main, r, np.zeros(40), replicate="batch") for r in ROLES}
    both = noise_floor(main, {r: pd.concat([tables[r], still[r]]) for r in ROLES})
    assert len(both) == 80
    two = resolve_thresholds("auto", "auto", both, 0.95)
    assert two["alpha_used"] == auto["alpha_used"] and two["noise_floor"]["by_replicate"]["batch"] == 0.0
    with pytest.raises(RdptError, match="classify.alpha: 'auto' needs the noise floor"):
        resolve_thresholds("auto", 0.1, floor.iloc[:0], 0.95)


def test_beta_sweep_matches_classify_at_every_beta():
    rng = np.random.default_rng(0)
    n = 500
    df = pd.DataFrame({"benchmark": rng.choice(["a", "b"], n), "p_teacher": rng.uniform(0, 1, n),
                       "p_student": rng.uniform(0, 1, n), "p_distilled": rng.uniform(0, 1, n)})
    df["cls"] = classify(df["p_teacher"], df["p_student"], df["p_distilled"], 0.1, 0.1)
    df.loc[:9, "cls"] = "Unscored"  # not in any share
    grid = [0.0, 0.05, 0.1, 0.2]
    sweep = beta_sweep(df, 0.1, grid).set_index(["benchmark", "beta"])
    for bench in ("a", "b"):
        scored = df[(df["benchmark"] == bench) & (df["cls"] != "Unscored")]
        for beta in grid:
            labels = classify(scored["p_teacher"], scored["p_student"], scored["p_distilled"], 0.1, beta)
            row = sweep.loc[(bench, beta)]
            assert row["n_sentences"] == len(scored)
            assert [row[c] for c in CLASSES] == pytest.approx([np.mean(labels == c) for c in CLASSES])
        b = sweep.loc[bench]
        assert b["Shared"].nunique() == 1  # depends on alpha only
        assert b["Teacher"].is_monotonic_decreasing and b["Boosted"].is_monotonic_increasing


# ----------------------------------------------------------------------------------- re-scoring (tiny LM)
def test_rescore_replicates_batch_matches_the_scorer_and_precision_moves_it(tiny_lm_factory):
    import torch

    from rdpt.engines.hf import HfEngine
    from rdpt.models import load_model, load_tokenizer
    from rdpt.provenance.score import ScoreItem, score_items

    corpus = ["The cat sat on the mat. Then it slept.", "Two plus three is five. So the answer is 5."] * 20
    template = "{% for m in messages %}Q: {{ m['content'] }}\n{% endfor %}A: "
    folder = tiny_lm_factory("noise_lm", corpus, chat_template=template, bos=False, arch="qwen2")
    tok = load_tokenizer(folder)
    texts = ["The cat sat. Then it slept on the mat.", "Two plus three is five. So the answer is 5. Done."]
    items = []
    for i, text in enumerate(texts):
        cut = [0] + [j + 2 for j, c in enumerate(text) if c == "." and j + 2 < len(text)] + [len(text)]
        items.append(ScoreItem(key=f"r{i}", prompt="Q: ?\nA: ", response=text, spans=list(zip(cut, cut[1:]))))
    index = [list(range(len(it.spans))) for it in items]
    model = load_model(folder, torch.device("cpu"), torch.float32)
    engine = HfEngine(model, chunk_size=16, pad_id=tok.pad_token_id)
    main, _ = score_items(engine, tok, items, progress=False)  # both responses in one padded batch
    table = rescore_replicates(engine, tok, items, index, ["precision", "batch"])
    assert list(table["replicate"].unique()) == ["batch", "precision"]  # batch first, whatever the order asked
    assert set(table.loc[table["replicate"] == "precision", "dtype"]) == {"bfloat16"}
    main_mean = np.array([s / n for sentences in main for s, n in sentences])
    batch = table[table["replicate"] == "batch"]["mean_logprob"].to_numpy()
    precision = table[table["replicate"] == "precision"]["mean_logprob"].to_numpy()
    np.testing.assert_allclose(batch, main_mean, atol=1e-5)  # fp32: another batch plan moves p by ~1e-7
    moved = np.abs(np.exp(precision) - np.exp(main_mean))
    assert moved.max() > 1e-6 and moved.max() < 0.05  # bf16 moves it, a little


# ------------------------------------------------------------------------------------ pipeline wiring
def _artifacts(tmp_path: Path) -> dict:
    """Sentences, three score folders, noise tables and grades of 24 responses of one benchmark."""
    rng = np.random.default_rng(1)
    sent_rows, grades = [], []
    p = {r: [] for r in ROLES}
    for q in range(12):
        for j in range(2):
            rid = f"b/q{q:02d}/{j}"
            text = "One. Two. Three. Four."
            for k, (start, end) in enumerate([(0, 5), (5, 10), (10, 17), (17, 22)]):
                sent_rows.append({"response_id": rid, "benchmark": "b", "sentence_idx": k, "start": start,
                                  "end": end, "text": text[start:end]})
                base = rng.uniform(0.3, 0.7)
                # within 0.1 of each other (Shared at alpha 0.1) but far beyond a 0.01 noise floor
                p["teacher"].append(base + rng.uniform(0.02, 0.05))
                p["student"].append(base)
                p["distilled"].append(base + rng.uniform(-0.05, 0.05))
            grades.append({"model": "distilled", "response_id": rid, "benchmark": "b", "question_id": f"q{q:02d}",
                           "correct": bool(j == 0 or q % 3 == 0), "finish_reason": "stop", "n_tokens": 20 + q,
                           "replacement_char": False})
    sents = pd.DataFrame(sent_rows)
    sents.to_parquet(tmp_path / "sentences.parquet")
    pd.DataFrame(grades).to_parquet(tmp_path / "graded.parquet")
    dirs = {}
    for role in ROLES:
        d = tmp_path / "scores" / role
        d.mkdir(parents=True)
        lp = np.log(p[role])
        pd.DataFrame({"response_id": sents["response_id"], "sentence_idx": sents["sentence_idx"], "n_tokens": 3,
                      "sum_logprob": 3 * lp, "mean_logprob": lp, "sum_rank": 3}).to_parquet(d / "scores.parquet")
        (d / "cost.json").write_text(json.dumps({"model": role, "tokens_scored": 3 * len(sents)}))
        dirs[role] = str(d)
    noise = tmp_path / "noise"
    noise.mkdir()
    picked = sents[sents["response_id"].isin(["b/q00/0", "b/q05/1", "b/q11/0"])]
    for role, scale in (("teacher", 0.004), ("student", 0.0), ("distilled", -0.002)):
        moved = np.array(p[role])[picked.index] + scale * np.linspace(0.5, 1.0, len(picked))
        pd.DataFrame({"response_id": picked["response_id"], "sentence_idx": picked["sentence_idx"],
                      "replicate": "precision", "dtype": "bfloat16", "n_tokens": 3,
                      "mean_logprob": np.log(moved)}).to_parquet(noise / f"{role}.parquet")
    return {"sentences": str(tmp_path / "sentences.parquet"), "scores": dirs, "noise": str(noise),
            "graded": str(tmp_path / "graded.parquet")}


def test_alpha_auto_is_used_reported_and_changes_the_classes(tmp_path):
    from rdpt.analysis.correlate import correlate
    from rdpt.io.artifacts import read_table
    from rdpt.provenance.classify import classify as classify_step

    art = _artifacts(tmp_path)
    small = {"min_responses": 1, "n_bootstrap": 30, "n_permutations": 30}
    fixed = _params(correlate=small)
    auto = _params(classify={"alpha": "auto", "beta": "auto"}, correlate=small)
    out = {}
    for name, params in (("fixed", fixed), ("auto", auto)):
        classify_step(params, art["sentences"], art["scores"], str(tmp_path / f"{name}.parquet"),
                      noise_dir=art["noise"], calibration_out=str(tmp_path / f"{name}.json"))
        out[name] = read_table(tmp_path / f"{name}.parquet", "classified")
    calibration = json.loads((tmp_path / "auto.json").read_text())
    # pairwise noise = |dT - dD| up to 0.006 at the largest move: alpha rounds its 95th percentile up
    assert calibration["alpha_source"] == "noise_floor" and 0.005 < calibration["alpha_used"] <= 0.006
    assert calibration["beta_used"] == calibration["alpha_used"]
    expect = classify_frame(out["auto"], calibration["alpha_used"], calibration["beta_used"])["cls"]
    assert out["auto"]["cls"].tolist() == expect.tolist()
    assert (out["fixed"]["cls"] == "Shared").mean() > 0.9  # everything within 0.1
    assert (out["auto"]["cls"] == "Shared").mean() < 0.1  # nothing within the noise floor
    assert len(calibration["beta_sweep"]) == len(auto.classify.beta_grid)

    payload = correlate(auto, str(tmp_path / "auto.parquet"), art["graded"], art["scores"],
                        str(tmp_path / "reports"), calibration_path=str(tmp_path / "auto.json"))
    metrics = json.loads((tmp_path / "reports" / "metrics.json").read_text())
    assert metrics["classify"]["alpha_used"] == calibration["alpha_used"]
    assert metrics["classify"]["alpha_source"] == "noise_floor" and "beta_sweep" not in metrics["classify"]
    assert metrics["correlation"]["b"]["n_questions"] == 12 and payload["correlation"] == metrics["correlation"]
    sweep = pd.read_csv(tmp_path / "reports" / "plots" / "beta_sensitivity.csv")
    assert list(sweep.columns[:3]) == ["benchmark", "beta", "n_sentences"] and len(sweep) == 13
    assert (tmp_path / "reports" / "tables" / "correlation.md").read_text().count("| b |") == 5
    png = tmp_path / "reports" / "figures" / "beta_sensitivity.png"
    first = png.read_bytes()
    from rdpt.analysis.figures import plot_beta_sensitivity

    plot_beta_sensitivity(sweep, calibration["alpha_used"], calibration["beta_used"], png)
    assert png.read_bytes() == first and first.startswith(b"\x89PNG")  # byte-deterministic


def test_alpha_auto_without_a_noise_floor_is_a_user_error(tmp_path):
    from rdpt.provenance.classify import classify as classify_step

    art = _artifacts(tmp_path)
    params = _params(classify={"alpha": "auto"})
    with pytest.raises(RdptError, match="classify.alpha: 'auto' needs the noise floor"):
        classify_step(params, art["sentences"], art["scores"], str(tmp_path / "c.parquet"))
    assert not (tmp_path / "c.parquet").exists()
    empty = tmp_path / "empty_noise"
    empty.mkdir()
    for role in ROLES:
        pd.DataFrame({c: pd.Series(dtype=object) for c in ["response_id", "sentence_idx", "replicate", "dtype",
                                                           "n_tokens", "mean_logprob"]}).to_parquet(
            empty / f"{role}.parquet")
    with pytest.raises(RdptError, match="noise_responses > 0"):
        classify_step(params, art["sentences"], art["scores"], str(tmp_path / "c.parquet"), noise_dir=str(empty))


def test_noise_step_writes_an_empty_table_without_loading_a_model(tmp_path):
    from rdpt.io.artifacts import read_table
    from rdpt.models import role_ref
    from rdpt.provenance.calibrate import noise

    art = _artifacts(tmp_path)
    params = _params(classify={"noise_responses": 0})
    out = tmp_path / "n.parquet"
    assert noise(params, role_ref(params, "teacher", "no/such-model"), "teacher", "unused.jsonl",
                 art["sentences"], str(out)) == {"n_responses": 0}
    assert read_table(out, "noise").empty

from pathlib import Path

import pytest
import yaml

from rdpt import RdptError
from rdpt.params import load_params, parse_params

ROOT = Path(__file__).resolve().parents[1]


def _default() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_default_params_validate():
    params = load_params(ROOT / "params.yaml")
    assert params.classify.alpha == 0.1 and params.classify.beta == 0.1
    assert set(params.data.benchmarks) == {"toy_easy", "toy_hard"}
    assert params.models.distilled.path is None


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["classify"].update(gamma=1), "classify.gamma: unknown key"),
        (lambda d: d.update(sede=1), "sede: unknown key"),
        (lambda d: d["classify"].update(beta=-0.1), "classify.beta: Input should be greater than or equal to 0"),
        (lambda d: d["generate"].update(num_samples=0), "generate.num_samples"),
        (lambda d: d["generate"].update(top_p=1.5), "generate.top_p"),
        (lambda d: d["generate"].update(top_p=0), "generate.top_p"),
        (lambda d: d["teach"].update(num_samples="four"), "teach.num_samples: Input should be a valid integer"),
        (lambda d: d["segment"].update(method="spacy"), "segment.method"),
        (lambda d: d["models"]["teacher"].update(path=None), "models.teacher.path is required"),
        (lambda d: d["data"].update(benchmarks={}), "data.benchmarks"),
    ],
)
def test_bad_params_one_line_error_naming_key(mutate, message):
    data = _default()
    mutate(data)
    with pytest.raises(RdptError) as err:
        parse_params(data, "params.yaml")
    text = str(err.value)
    assert message in text
    assert text.startswith("params.yaml: ")
    assert "\n" not in text


def test_missing_and_malformed_params_file(tmp_path):
    with pytest.raises(RdptError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: [1\n")
    with pytest.raises(RdptError, match="not valid YAML"):
        load_params(bad)

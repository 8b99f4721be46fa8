"""rdpt.params.trace: the recording view dvc.yaml's params are checked with (tests/test_pipeline_e2e.py)."""

from pathlib import Path

from rdpt.params import load_params
from rdpt.params.trace import Traced

ROOT = Path(__file__).resolve().parents[1]


def _traced():
    seen: set[str] = set()
    return Traced(load_params(ROOT / "params.yaml"), "", seen), seen


def test_leaf_reads_record_their_full_key_and_sections_stay_traced():
    params, seen = _traced()
    assert params.classify.beta == 0.1 and params.seed == 0
    spec = params.models.teacher
    assert spec.path == "data/toy/models/teacher"
    assert seen == {"classify.beta", "seed", "models.teacher.path"}


def test_a_method_or_a_whole_dict_records_the_whole_section():
    params, seen = _traced()
    params.generate.model_dump()
    list(params.data.benchmarks)
    assert seen == {"generate", "data.benchmarks"}


def test_one_dict_entry_by_name_records_only_that_entry():
    params, seen = _traced()
    spec = params.identify.candidates.get("alt_teacher")
    assert spec.path and "identify.candidates.alt_teacher.path" in seen
    assert params.identify.candidates.get("nobody") is None
    assert "identify.candidates" not in seen

"""Models bigger than one device: ``models.<role>.device_map`` / ``max_memory`` reach the HF loader, a model
placed by accelerate scores like a plain load, and inputs go to the embedding's device (never ``model.device``
blindly: it is ``meta`` when the first weights are offloaded). CPU only: "disk" stands in for a second device::

    pytest tests/test_device_map.py -q
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
import transformers

from rdpt import RdptError
from rdpt.engines.hf import HfEngine
from rdpt.generation.sample import sample
from rdpt.io.artifacts import write_jsonl
from rdpt.models import ModelRef, load_model, load_tokenizer, render_prompt, role_ref
from rdpt.params import parse_params
from rdpt.placement import input_device
from rdpt.provenance.score import ScoreItem, reference_score_items, score_items
from rdpt.provenance.segment import split

TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|user|>{{ m['content'] }}<|end|>{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")
CORPUS = [f"Add {a} and {b}. Then {a} + {b} = {a + b}. The answer is {a + b}." for a in range(30) for b in range(5)]
# the embedding on "disk" (meta weights, run on CPU by accelerate's hook), the rest on CPU
OFFLOADED = {"model.embed_tokens": "disk", "model.layers": "cpu", "model.norm": "cpu", "model.rotary_emb": "cpu",
             "lm_head": "cpu"}


@pytest.fixture(scope="module")
def tiny(tiny_lm_factory):
    path = tiny_lm_factory("device_map_lm", CORPUS, chat_template=TEMPLATE)
    return path, load_tokenizer(path)


def _items(tok) -> list[ScoreItem]:
    items = []
    for i, text in enumerate(CORPUS[:12:3]):
        items.append(ScoreItem(f"r{i}", render_prompt(tok, f"What is {i} + 1?"), text, split(text)))
    return items


def _params(tmp_path, teacher: dict):
    bench = tmp_path / "bench.jsonl"
    write_jsonl(bench, [{"id": "q0", "question": "What is 1 + 1?", "answer": "2"}])
    return parse_params({"device": "cpu", "models": {"teacher": teacher, "student": {"path": "s"}},
                         "data": {"train": {"path": str(bench)}, "benchmarks": {"b": {"path": str(bench)}}}})


def test_device_map_and_max_memory_reach_the_loader(tiny, tmp_path, monkeypatch):
    path, _ = tiny
    params = _params(tmp_path, {"path": path, "device_map": "auto", "max_memory": {"cpu": "2GiB"}})
    ref = role_ref(params, "teacher", path)
    assert (ref.device_map, ref.max_memory) == ("auto", {"cpu": "2GiB"})
    seen = []
    real = transformers.AutoModelForCausalLM.from_pretrained

    def recording(*args, **kwargs):
        seen.append(copy.deepcopy(kwargs))  # as passed: transformers rewrites max_memory in place
        return real(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", recording)
    model = load_model(ref, torch.device("cpu"), torch.float32)
    assert seen[0]["device_map"] == "auto" and seen[0]["max_memory"] == {"cpu": "2GiB"}
    # one device: transformers places it all there and sets no hf_device_map (that is for a real split)
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    assert ref.max_memory == {"cpu": "2GiB"}  # the params' dict is left as it was
    load_model(ModelRef(path), torch.device("cpu"), torch.float32)
    assert "device_map" not in seen[1] and "max_memory" not in seen[1]  # a plain load stays plain
    # training never takes the scoring placement
    assert dataclasses.replace(ref, device_map=None).device_map is None


@pytest.mark.parametrize("device_map", ["auto", "cpu", {"": "cpu"}, OFFLOADED],
                         ids=["auto", "cpu", "dict", "embedding-offloaded"])
def test_a_placed_model_scores_and_samples_like_a_plain_load(tiny, device_map):
    path, tok = tiny
    plain = load_model(ModelRef(path), torch.device("cpu"), torch.float32)
    placed = load_model(ModelRef(path, device_map=device_map), torch.device("cpu"), torch.float32)
    items = _items(tok)
    want, _ = score_items(HfEngine(plain), tok, items, rank_clip=100, progress=False)
    got, _ = score_items(HfEngine(placed), tok, items, rank_clip=100, progress=False)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose([x[0] for x in a], [x[0] for x in b], atol=1e-5)
        assert [x[1:] for x in a] == [x[1:] for x in b]
    ref = reference_score_items(placed, tok, items[:2], rank_clip=100)  # the reference scorer runs on it too
    np.testing.assert_allclose([x[0] for x in ref[0]], [x[0] for x in want[0]], atol=1e-5)
    left = load_tokenizer(path, padding_side="left")
    prompts = [render_prompt(left, f"What is {a} + 2?") for a in range(3)]
    kwargs = {"num_samples": 2, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 8, "batch_size": 3, "seed": 1}
    assert ([[s["token_ids"] for s in o] for o in sample(HfEngine(placed), left, prompts, **kwargs)]
            == [[s["token_ids"] for s in o] for o in sample(HfEngine(plain), left, prompts, **kwargs)])


def test_inputs_go_to_the_embedding_device_not_model_device(tiny):
    path, _ = tiny
    placed = load_model(ModelRef(path, device_map=OFFLOADED), torch.device("cpu"), torch.float32)
    assert placed.get_input_embeddings().weight.device.type == "meta"  # offloaded: no weights on a device
    assert placed.device.type == "meta"  # what `model.device` would have sent the inputs to
    assert input_device(placed) == torch.device("cpu") == HfEngine(placed).device
    assert HfEngine(placed).describe() == "device_map:cpu,disk"


def test_max_memory_without_a_device_map_is_one_line(tmp_path):
    with pytest.raises(RdptError, match=r"models\.teacher: .*max_memory is set but device_map is null"):
        _params(tmp_path, {"path": "t", "max_memory": {"cpu": "1GiB"}})
    with pytest.raises(RdptError, match=r"models\.teacher\.max_memory: .*'gpu0': a GPU index"):
        _params(tmp_path, {"path": "t", "device_map": "auto", "max_memory": {"gpu0": "1GiB"}})
    with pytest.raises(RdptError, match=r"models\.teacher\.device_map: .*'everywhere': one of auto, balanced"):
        _params(tmp_path, {"path": "t", "device_map": "everywhere"})
    with pytest.raises(RdptError, match=r"models\.teacher\.device_map: .*'lm_head' -> 'gpu'"):
        _params(tmp_path, {"path": "t", "device_map": {"lm_head": "gpu"}})
    for good in ("balanced", "cuda:1", {"model.layers": 0, "lm_head": "cpu"}):  # valid ones parse as given
        assert _params(tmp_path, {"path": "t", "device_map": good}).models.teacher.device_map == good

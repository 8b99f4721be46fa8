import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from rdpt import RdptError
from rdpt.models import (
    ModelRef,
    encode_prompt,
    encode_prompt_response,
    load_model,
    load_tokenizer,
    render_prompt,
    resolve_ref,
    write_ref,
)

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ["Tom has 3 apples. He buys 2 more. So he has 5 apples.", "The answer is \\boxed{5}."] * 20
TEMPLATE_BOS = "{{ bos_token }}{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}" \
               "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
TEMPLATE_PLAIN = "{% for m in messages %}Q: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}A: {% endif %}"


@pytest.fixture(scope="module")
def with_template(tiny_lm_factory):
    return tiny_lm_factory("tmpl", CORPUS, chat_template=TEMPLATE_BOS)


def test_round_trip_same_path_as_hub_id(with_template):
    tok = load_tokenizer(with_template)
    model = load_model(with_template, torch.device("cpu"), torch.float32)
    assert tok.padding_side == "right" and load_tokenizer(with_template, padding_side="left").padding_side == "left"
    assert render_prompt(tok, "2+2?") == "<bos><|user|>2+2?\n<|assistant|>\n"
    assert model.dtype == torch.float32


def test_single_bos_even_when_template_writes_it(with_template):
    tok = load_tokenizer(with_template)
    ids = encode_prompt(tok, render_prompt(tok, "hi"))
    assert ids[0] == tok.bos_token_id and ids[1] != tok.bos_token_id
    doubled = encode_prompt(tok, "<bos><bos><|user|>hi")
    assert doubled.count(tok.bos_token_id) == 1


def test_offsets_cover_response(with_template):
    tok = load_tokenizer(with_template)
    response = "Tom has 3 apples. So 5."
    enc = encode_prompt_response(tok, render_prompt(tok, "q"), response)
    assert enc.input_ids[: len(enc.prompt_ids)] == enc.prompt_ids
    assert len(enc.offsets) == len(enc.response_ids)
    assert enc.offsets[0][0] == 0 and enc.offsets[-1][1] == len(response)


def test_missing_model_path(tmp_path):
    with pytest.raises(RdptError, match="path does not exist"):
        load_tokenizer(str(tmp_path / "no" / "such" / "model"))
    # tests run with HF_HUB_OFFLINE=1: an uncached hub id fails at once (issue 16 item 10)
    with pytest.raises(RdptError, match="not in the local hub cache and the hub is off"):
        load_model("no-such-org/no-such-model", torch.device("cpu"), torch.float32)


def test_tokenizer_without_chat_template(tiny_lm_factory):
    folder = tiny_lm_factory("notmpl", CORPUS)
    with pytest.raises(RdptError, match="no chat template; set models.<role>.chat_template"):
        load_tokenizer(folder)
    tok = load_tokenizer(ModelRef(folder, chat_template=TEMPLATE_PLAIN))
    assert render_prompt(tok, "x") == "Q: x\nA: "


def test_model_reference_folder(tmp_path, with_template):
    write_ref(tmp_path / "ref", ModelRef(with_template, None, TEMPLATE_PLAIN))
    ref = resolve_ref(str(tmp_path / "ref"))
    assert ref.path == with_template and ref.chat_template == TEMPLATE_PLAIN
    assert render_prompt(load_tokenizer(str(tmp_path / "ref")), "x") == "Q: x\nA: "


def test_stage_bad_params_one_line_error_no_output(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["classify"]["bogus"] = 1
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params))
    out = tmp_path / "classified.parquet"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "stages" / "classify.py"), "--params", str(tmp_path / "p.yaml"),
         "--sentences", "s", "--teacher", "t", "--student", "s", "--distilled", "d", "--out", str(out)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"error: {tmp_path / 'p.yaml'}: classify.bogus: unknown key"
    assert not out.exists()


def test_custom_tokenizer_survives_a_model_type_with_its_own_tokenizer_class(tiny_lm_factory):
    # transformers maps model_type qwen2 to Qwen2Tokenizer (digits split, extra tokens); a checkpoint
    # that saved the generic fast tokenizer must come back with the very same tokenization.
    from transformers import PreTrainedTokenizerFast

    folder = tiny_lm_factory("qwen2tok", CORPUS + ["13 + 2 = 15."] * 20, chat_template=TEMPLATE_PLAIN, arch="qwen2")
    saved = PreTrainedTokenizerFast(tokenizer_file=str(Path(folder) / "tokenizer.json"))
    tok = load_tokenizer(folder)
    text = "Tom has 13 apples. 13 + 2 = 15."
    assert tok(text)["input_ids"] == saved(text)["input_ids"]

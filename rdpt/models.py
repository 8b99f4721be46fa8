"""The one place that loads models and tokenizers, renders prompts and tokenizes prompt + response.

A hub id, a local checkpoint and the toy world's folders all go through :func:`load_model` /
:func:`load_tokenizer`. Nobody else calls ``from_pretrained``::

    python -c "from rdpt.models import load_tokenizer; print(load_tokenizer('toy/models/teacher'))"
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from rdpt import RdptError

log = logging.getLogger(__name__)

# A folder holding only this file stands for a model by reference (hub id or path + revision):
# `distill` writes one when params name an existing distilled checkpoint, so downstream stages
# keep one input path whether the model was trained here or not.
MODEL_REF_FILE = "rdpt_model_ref.json"


@dataclass(frozen=True)
class ModelRef:
    path: str
    revision: str | None = None
    chat_template: str | None = None


def resolve_ref(path: str, revision: str | None = None, chat_template: str | None = None) -> ModelRef:
    """Follow a model-reference folder to the model it names; anything else is returned as is."""
    ref_file = Path(path) / MODEL_REF_FILE
    if ref_file.is_file():
        data = json.loads(ref_file.read_text())
        return ModelRef(data["path"], data.get("revision"), chat_template or data.get("chat_template"))
    return ModelRef(path, revision, chat_template)


def write_ref(folder: str | Path, ref: ModelRef) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"path": ref.path, "revision": ref.revision, "chat_template": ref.chat_template}
    (folder / MODEL_REF_FILE).write_text(json.dumps(payload, indent=2) + "\n")


def resolve_device(device: str = "auto", dtype: str = "auto") -> tuple[torch.device, torch.dtype]:
    """auto: CUDA with bf16 weights when available, else CPU in float32."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RdptError("device: 'cuda' requested but no CUDA device is available")
    if dtype == "auto":
        dtype = "bfloat16" if device == "cuda" else "float32"
    return torch.device(device), getattr(torch, dtype)


def _not_found(ref: ModelRef, err: Exception) -> RdptError:
    where = f"{ref.path}" + (f"@{ref.revision}" if ref.revision else "")
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return RdptError(f"model {where!r}: cannot load ({first})")


def _check_exists(ref: ModelRef) -> None:
    # Hub ids are "name" or "org/name"; anything else that is missing locally is a path typo and
    # gets a clear error instead of a confusing hub lookup.
    path = Path(ref.path).expanduser()
    looks_local = ref.path.startswith((".", "/", "~")) or ref.path.count("/") >= 2
    if looks_local and not path.exists():
        raise RdptError(f"model {ref.path!r}: path does not exist")


_GENERIC_TOKENIZERS = {"PreTrainedTokenizerFast", "TokenizersBackend"}


def _saved_class(ref: ModelRef) -> str | None:
    """``tokenizer_class`` recorded in the checkpoint's tokenizer_config.json, if any."""
    from transformers.utils import cached_file

    try:
        path = cached_file(ref.path, "tokenizer_config.json", revision=ref.revision,
                           _raise_exceptions_for_missing_entries=False)
    except Exception:  # noqa: BLE001 - no config: let AutoTokenizer decide (and report)
        return None
    if not path:
        return None
    return json.loads(Path(path).read_text()).get("tokenizer_class")


def load_tokenizer(ref: ModelRef | str, padding_side: str = "right"):
    """Fast tokenizer with a chat template (the params' one wins); pad token falls back to EOS."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    ref = resolve_ref(ref) if isinstance(ref, str) else resolve_ref(ref.path, ref.revision, ref.chat_template)
    _check_exists(ref)
    try:
        # A tokenizer saved as the generic fast class (a custom BPE, e.g. the toy world's) must be
        # loaded as that class: AutoTokenizer would otherwise pick the class of the model type
        # (e.g. Qwen2Tokenizer for a qwen2 config), which re-splits digits and adds tokens.
        cls = PreTrainedTokenizerFast if _saved_class(ref) in _GENERIC_TOKENIZERS else AutoTokenizer
        tok = cls.from_pretrained(ref.path, revision=ref.revision)
    except Exception as err:  # noqa: BLE001 - every loading failure becomes one actionable line
        raise _not_found(ref, err) from None
    if not tok.is_fast:
        raise RdptError(f"model {ref.path!r}: a fast tokenizer is required (character offsets)")
    if ref.chat_template:
        tok.chat_template = ref.chat_template
    if not tok.chat_template:
        raise RdptError(
            f"model {ref.path!r}: tokenizer has no chat template; set models.<role>.chat_template in params.yaml"
        )
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    # padding_side is not kept by save/reload for every tokenizer class: set it on every load.
    tok.padding_side = padding_side
    return tok


def load_model(ref: ModelRef | str, device: torch.device, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM

    ref = resolve_ref(ref) if isinstance(ref, str) else resolve_ref(ref.path, ref.revision, ref.chat_template)
    _check_exists(ref)
    try:
        model = AutoModelForCausalLM.from_pretrained(ref.path, revision=ref.revision, dtype=dtype)
    except Exception as err:  # noqa: BLE001
        raise _not_found(ref, err) from None
    model.to(device)
    model.eval()
    log.info("loaded %s (%s params) on %s in %s", ref.path, f"{model.num_parameters():,}", device, dtype)
    return model


def context_length(model) -> int | None:
    cfg = model.config
    for key in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        value = getattr(cfg, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def render_prompt(tokenizer, question: str) -> str:
    """The model's own chat template of the question, generation prompt on."""
    messages = [{"role": "user", "content": question}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


@dataclass
class Encoded:
    """Token ids of prompt + response and where the response tokens sit in the text.

    ``input_ids = prompt_ids + response_ids`` (+ EOS when asked). ``offsets[i]`` is the character
    span of ``response_ids[i]`` in the response text.
    """

    prompt_ids: list[int]
    response_ids: list[int]
    offsets: list[tuple[int, int]]

    @property
    def input_ids(self) -> list[int]:
        return self.prompt_ids + self.response_ids


def encode_prompt(tokenizer, prompt_text: str) -> list[int]:
    """Token ids of a rendered prompt, with exactly one BOS where the tokenizer uses one.

    The template may already write the BOS token as text; the tokenizer may add one too. We
    tokenize without special tokens, then add BOS only if the model expects one and the template
    did not write it, and collapse a doubled BOS (a silent accuracy killer for Llama-style models).
    """
    ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    bos = tokenizer.bos_token_id
    if bos is not None:
        with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
        expects_bos = len(with_special) > 0 and with_special[0] == bos
        while len(ids) >= 2 and ids[0] == bos and ids[1] == bos:
            ids = ids[1:]
        if expects_bos and (not ids or ids[0] != bos):
            ids = [bos] + ids
    return ids


def encode_prompt_response(tokenizer, prompt_text: str, response: str) -> Encoded:
    """Tokenize prompt and response separately (no BPE merge across the boundary), with offsets."""
    prompt_ids = encode_prompt(tokenizer, prompt_text)
    enc = tokenizer(response, add_special_tokens=False, return_offsets_mapping=True)
    return Encoded(prompt_ids, list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]])

"""The one place that loads models and tokenizers, renders prompts and tokenizes prompt + response.

A hub id, a local checkpoint and the toy world's folders all go through :func:`load_model` /
:func:`load_tokenizer`. Nobody else calls ``from_pretrained``::

    python -c "from rdpt.models import load_tokenizer; print(load_tokenizer('toy/models/teacher'))"
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass, field
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
    gguf_file: str | None = None  # a GGUF checkpoint inside `path`: tokenizer and weights come from it
    # The vLLM server(s) serving this model (`server` engine; a tuple = replicas); the tokenizer loads from `path`.
    server: str | tuple[str, ...] | None = None
    # How prompts are rendered (docs/presets.md, "Templates, thinking and long traces"): the model's system
    # prompt, extra chat-template arguments (e.g. {"enable_thinking": False}) and the `think` rule (auto | keep).
    system_prompt: str | None = None
    chat_template_kwargs: dict | None = field(default=None, hash=False)
    think: str = "auto"
    # Model config fields set at load time (RoPE scaling, max_position_embeddings): HF and vLLM (hf_overrides).
    config_overrides: dict | None = field(default=None, hash=False)
    # HF loader only: transformers' device_map / max_memory, handed through (rdpt.placement)
    device_map: str | dict | None = field(default=None, hash=False)
    max_memory: dict | None = field(default=None, hash=False)


def resolve_ref(path: str, revision: str | None = None, chat_template: str | None = None,
                gguf_file: str | None = None) -> ModelRef:
    """Follow a model-reference folder to the model it names; anything else is returned as is."""
    ref_file = Path(path) / MODEL_REF_FILE
    if ref_file.is_file():
        data = json.loads(ref_file.read_text())
        if not isinstance(data, dict) or not isinstance(data.get("path", data.get("asset")), str):
            raise RdptError(f"{ref_file}: expected {{\"path\": ...}} or {{\"asset\": ...}}")
        target = data.get("path")
        if data.get("asset"):
            # A real asset by name (rdpt.real_assets): its cache folder is found, and checked by sha256, when the
            # model loads, so the reference is the same on every machine and written without the asset.
            from rdpt.real_assets import asset_path

            target = str(asset_path(data["asset"], tuple(data.get("end_texts") or ())))
        return ModelRef(target, data.get("revision"), chat_template or data.get("chat_template"),
                        gguf_file or data.get("gguf_file"))
    return ModelRef(path, revision, chat_template, gguf_file)


def write_ref(folder: str | Path, ref: ModelRef | None = None, *, asset: str | None = None,
              end_texts: tuple[str, ...] = ()) -> None:
    """A model-reference folder naming ``ref``'s model, or the real asset ``asset`` (resolved when loaded)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if asset is not None:
        payload = {"asset": asset, "end_texts": list(end_texts)}
    else:
        payload = {"path": ref.path, "revision": ref.revision, "chat_template": ref.chat_template,
                   "gguf_file": ref.gguf_file}
    (folder / MODEL_REF_FILE).write_text(json.dumps(payload, indent=2) + "\n")


def spec_ref(spec, path: str | None = None) -> ModelRef:
    """The model a params model spec (``models.<role>``, an ``identify.candidates`` entry) names, resolved.

    With ``path``, the model at ``path`` with that spec's template; the spec's revision, GGUF file and
    server apply only when ``path`` is the spec's own model (a model trained here, e.g. a selection run's
    student, is a plain local folder).

    The spec's prompt settings (``system_prompt``, ``chat_template_kwargs``, ``think``) apply to any ``path``, like
    its template; ``config_overrides`` only to the spec's own model (a model trained here saved its config with
    them already).
    """
    path = spec.path if path is None else path
    own = spec.path == path
    ref = resolve_ref(path, spec.revision if own else None, spec.chat_template,
                      getattr(spec, "gguf_file", None) if own else None)
    same = ref.path == spec.path
    server = (tuple(spec.server) if isinstance(spec.server, list) else spec.server) if same else None  # hashable
    return ModelRef(ref.path, ref.revision, ref.chat_template, ref.gguf_file, server,
                    system_prompt=getattr(spec, "system_prompt", None),
                    chat_template_kwargs=getattr(spec, "chat_template_kwargs", None),
                    think=getattr(spec, "think", "auto"),
                    config_overrides=getattr(spec, "config_overrides", None) if same else None,
                    device_map=getattr(spec, "device_map", None), max_memory=getattr(spec, "max_memory", None))


def role_ref(params, role: str, path: str) -> ModelRef:
    """The model at ``path`` with what ``params.models.<role>`` says of it (see :func:`spec_ref`).

    The one place a role is looked up: stages resolve their model here and pass the reference down.
    """
    return spec_ref(getattr(params.models, role), path)


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


# huggingface_hub logs through its own handler *and* propagates to the root logger the stages configure:
# every retry warning would be printed twice.
logging.getLogger("huggingface_hub").propagate = False

_PROBE_TIMEOUT_S = 3.0


@functools.lru_cache(maxsize=None)
def _hub_unreachable() -> str | None:
    """Why the hub endpoint cannot be reached (one quick TCP connect, once per process), or None.

    Behind a proxy (``HTTPS_PROXY`` ...) the proxy is what must answer."""
    import socket
    import urllib.request
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    url = urlsplit(constants.ENDPOINT)
    proxy = urllib.request.getproxies().get(url.scheme)
    if proxy and not urllib.request.proxy_bypass(url.hostname or ""):
        target, url = f"the proxy {proxy}", urlsplit(proxy if "//" in proxy else f"http://{proxy}")
    else:
        target = constants.ENDPOINT
    try:
        host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
        socket.create_connection((host, port), timeout=_PROBE_TIMEOUT_S).close()
    except (OSError, ValueError) as err:
        return f"cannot reach {target} ({str(err) or type(err).__name__})"
    return None


def _hub_cached(ref: ModelRef) -> bool:
    """Whether the local hub cache holds this model (its config, tokenizer config or GGUF file)."""
    from huggingface_hub import try_to_load_from_cache

    names = [n for n in (getattr(ref, "gguf_file", None), "config.json", "tokenizer_config.json") if n]
    for name in names:
        try:
            if isinstance(try_to_load_from_cache(ref.path, name, revision=ref.revision), str):
                return True
        except Exception:  # noqa: BLE001 - not a valid repo id, or no cache: not cached
            pass
    return False


def _go_offline() -> None:
    """Make huggingface_hub (and transformers through it) read the cache only: no more network retries."""
    import os

    from huggingface_hub import constants

    constants.HF_HUB_OFFLINE = True
    os.environ["HF_HUB_OFFLINE"] = "1"  # for worker processes (accelerate, vLLM)


def _check_exists(ref: ModelRef) -> None:
    # Hub ids are "name" or "org/name"; anything else that is missing locally is a path typo and
    # gets a clear error instead of a confusing hub lookup.
    path = Path(ref.path).expanduser()
    looks_local = ref.path.startswith((".", "/", "~")) or ref.path.count("/") >= 2
    if looks_local and not path.exists():
        raise RdptError(f"model {ref.path!r}: path does not exist")
    if path.exists():
        return
    # A hub id. Offline (HF_HUB_OFFLINE, or no route to the hub) it can only come from the local cache:
    # fail now, in one line, instead of after ~75 s of retries.
    from huggingface_hub import constants

    where = ref.path + (f"@{ref.revision}" if ref.revision else "")
    if constants.HF_HUB_OFFLINE:
        if not _hub_cached(ref):
            raise RdptError(f"model {where!r}: not in the local hub cache and the hub is off (HF_HUB_OFFLINE=1): "
                            "download it where there is a network, or point the params at a local folder")
        return
    reason = _hub_unreachable()
    if reason is None:
        return
    if not _hub_cached(ref):
        raise RdptError(f"model {where!r}: not in the local hub cache and {reason}: check the network (or "
                        "HF_ENDPOINT), or point the params at a local folder")
    log.warning("%s; using the local hub cache of %s (offline from here on)", reason, where)
    _go_offline()


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


def _gguf_kwargs(ref: ModelRef) -> dict:
    """``gguf_file=`` for from_pretrained, after checking a local GGUF against its sha256 pin (cached)."""
    if not ref.gguf_file:
        return {}
    local = Path(ref.path).expanduser() / ref.gguf_file
    if local.is_file():
        from rdpt.real_assets import check_gguf

        check_gguf(local)
    return {"gguf_file": ref.gguf_file}


def load_tokenizer(ref: ModelRef | str, padding_side: str = "right"):
    """Fast tokenizer with a chat template (the params' one wins); pad token falls back to EOS."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    ref = _resolved(ref)
    _check_exists(ref)
    gguf = _gguf_kwargs(ref)
    try:
        # A tokenizer saved as the generic fast class (a custom BPE, e.g. the toy world's) must be
        # loaded as that class: AutoTokenizer would otherwise pick the class of the model type
        # (e.g. Qwen2Tokenizer for a qwen2 config), which re-splits digits and adds tokens.
        # A GGUF carries its own tokenizer, which AutoTokenizer converts to a fast one.
        generic = not gguf and _saved_class(ref) in _GENERIC_TOKENIZERS
        cls = PreTrainedTokenizerFast if generic else AutoTokenizer
        tok = cls.from_pretrained(ref.path, revision=ref.revision, **gguf)
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
    # How render_prompt renders for this model (like the chat template, a property of the loaded tokenizer here)
    tok.rdpt_prompt = PromptStyle(ref.system_prompt, dict(ref.chat_template_kwargs or {}), ref.think)
    return tok


def load_model(ref: ModelRef | str, device: torch.device, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM

    from rdpt.placement import describe, load_kwargs, placement

    ref = _resolved(ref)
    _check_exists(ref)
    gguf = _gguf_kwargs(ref)
    extra = {}
    if ref.config_overrides:
        extra["config"] = overridden_config(ref)
    if ref.device_map is not None:  # accelerate places the modules (GPUs, CPU, disk last); `device` is unused
        placed, offload = load_kwargs(ref.device_map, ref.max_memory)
        extra |= placed
    try:
        model = AutoModelForCausalLM.from_pretrained(ref.path, revision=ref.revision, dtype=dtype, **gguf, **extra)
    except RdptError:
        raise
    except Exception as err:  # noqa: BLE001
        raise _not_found(ref, err) from None
    if ref.device_map is None:
        model.to(device)
    else:
        model._rdpt_offload = offload  # lives (and its folder with it) as long as the model
        log.info("%s: device_map %s -> %s", ref.path, ref.device_map, placement(model) or describe(model))
    model.eval()
    if ref.config_overrides:
        log.info("%s: config overrides %s (context %s -> %s positions)", ref.path, ref.config_overrides,
                 original_context_length(ref), context_length(model))
    log.info("loaded %s (%s params) on %s in %s", ref.path, f"{model.num_parameters():,}", device, dtype)
    return model


def _resolved(ref: ModelRef | str) -> ModelRef:
    """``ref`` with a model-reference folder followed; its prompt settings and config overrides kept."""
    import dataclasses

    if isinstance(ref, str):
        return resolve_ref(ref)
    found = resolve_ref(ref.path, ref.revision, ref.chat_template, ref.gguf_file)
    return dataclasses.replace(ref, path=found.path, revision=found.revision, chat_template=found.chat_template,
                               gguf_file=found.gguf_file)


def _hf_config(ref: ModelRef):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(ref.path, revision=ref.revision, **_gguf_kwargs(ref))
    except Exception as err:  # noqa: BLE001
        raise _not_found(ref, err) from None


def apply_config_overrides(config, overrides: dict, where: str = "model"):
    """Set ``overrides`` on a transformers config, in place; returns it.

    ``rope_scaling`` (the model cards' spelling: ``{type: yarn, factor: 4.0, original_max_position_embeddings:
    32768}``) and ``rope_parameters`` are merged into the config's RoPE parameters (``type`` read as
    ``rope_type``), so ``rope_theta`` stays; any other key must be a field the config already has (a typo is
    an error, never a silently ignored setting).
    """
    for key, value in overrides.items():
        if key in ("rope_scaling", "rope_parameters") and isinstance(value, dict):
            scaling = dict(value)
            if "type" in scaling and "rope_type" not in scaling:
                scaling["rope_type"] = scaling.pop("type")
            current = getattr(config, "rope_parameters", None)
            if isinstance(current, dict):  # transformers >= 5: one dict with rope_theta and the scaling
                config.rope_parameters = {**current, **scaling}
            else:
                config.rope_scaling = scaling
            continue
        if not hasattr(config, key):
            raise RdptError(f"model {where!r}: config_overrides: {key!r} is not a field of its config "
                            f"({type(config).__name__})")
        setattr(config, key, value)
    return config


def overridden_config(ref: ModelRef):
    """The model's config with ``ref.config_overrides`` applied (what :func:`load_model` builds the model with)."""
    return apply_config_overrides(_hf_config(ref), dict(ref.config_overrides or {}), ref.path)


def original_context_length(ref: ModelRef) -> int | None:
    """The context the model's own config declares, before ``config_overrides`` (None when unknown)."""
    try:
        config = _hf_config(ref)
    except RdptError:
        return None
    return context_length(config)


def context_length(model) -> int | None:
    """Positions a model (or a transformers config) declares."""
    cfg = getattr(model, "config", model)
    for key in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        value = getattr(cfg, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


@dataclass(frozen=True)
class PromptStyle:
    """How :func:`render_prompt` renders for one model (``models.<role>``'s system_prompt, chat_template_kwargs,
    think); :func:`load_tokenizer` attaches it to the tokenizer as ``rdpt_prompt``."""

    system_prompt: str | None = None
    chat_template_kwargs: dict = field(default_factory=dict, hash=False)
    think: str = "auto"


def prompt_style(tokenizer) -> PromptStyle:
    style = getattr(tokenizer, "rdpt_prompt", None)
    return style if isinstance(style, PromptStyle) else PromptStyle()


def render_prompt(tokenizer, question: str, system_prompt: str | None = None) -> str:
    """The model's own chat template of the question, generation prompt on.

    System prompt: ``system_prompt`` (a benchmark's, ``data.<...>.system_prompt``) when given, else the model's
    (``models.<role>.system_prompt``); an empty string means none. The model's ``chat_template_kwargs`` (e.g.
    Qwen3's ``enable_thinking``) are passed to the template. With neither set the prompt is exactly the
    template's rendering of one user message.

    A template that does not compile or fails while rendering (a Jinja syntax error, an undefined name, its
    own ``raise_exception``) is a one-line :class:`RdptError` naming the model.
    """
    style = prompt_style(tokenizer)
    system = style.system_prompt if system_prompt is None else system_prompt
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                             **style.chat_template_kwargs)
    except Exception as err:  # noqa: BLE001 - jinja2 errors and whatever a template raises
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        line = getattr(err, "lineno", None)
        detail = f"{type(err).__name__}{f' at line {line}' if line else ''}{f': {first}' if first else ''}"
        name = getattr(tokenizer, "name_or_path", "") or "?"
        raise RdptError(f"model {name!r}: the chat template cannot be rendered ({detail[:300]}); fix "
                        "models.<role>.chat_template or the tokenizer's template") from None
    if not isinstance(text, str):
        raise RdptError(f"model {getattr(tokenizer, 'name_or_path', '?')!r}: the chat template did not render text")
    return text


# The `think: auto` rule (docs/presets.md, "Templates, thinking and long traces").
THINK_MODES = ("auto", "keep")


def prompt_overlap(prompt: str, response: str) -> int:
    """Characters at the end of ``prompt`` that ``response`` repeats at its start (0 = none).

    The overlap is the longest tail of the prompt, trailing whitespace aside, that the response begins with and
    that starts with ``<`` (a tag or special-token marker: ``<think>``, ``<think>\n\n</think>``); the prompt's
    whitespace after it counts as part of it. Plain text never overlaps: a template ending ``### Solution\n``
    and a response starting ``Solution:`` are left as they are.
    """
    head = prompt.rstrip()
    for start in range(max(0, len(head) - len(response)), len(head)):
        if head[start] == "<" and response.startswith(head[start:]):
            return len(prompt) - start
    return 0


def prompt_for_response(tokenizer, prompt: str, response: str) -> str:
    """``prompt`` ready to be followed by ``response`` for scoring or fine-tuning, under the model's ``think`` mode.

    ``auto`` (the default): a response that begins with what the rendered generation prompt already ends with
    (an R1-style template's ``<think>\n`` and a response that starts with ``<think>``) loses nothing: the
    overlap is cut from the end of the *prompt* (:func:`prompt_overlap`), so the context holds it once and the
    response's text, tokens and sentence spans are unchanged. ``keep``: the prompt as rendered.
    """
    if prompt_style(tokenizer).think == "keep":
        return prompt
    n = prompt_overlap(prompt, response)
    return prompt[: len(prompt) - n] if n else prompt


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

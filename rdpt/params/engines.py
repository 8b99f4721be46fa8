"""Params of where models run: the vLLM engine, a vLLM server, and training processes (accelerate)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from rdpt.params.base import Section


class VllmParams(Section):
    """Settings of the offline vLLM engine (``engine: vllm``), passed to ``vllm.LLM``."""

    gpu_memory_utilization: float | None = Field(None, gt=0, le=1, description=(
        "Share of GPU memory vLLM reserves; on CPU the share of RAM it takes. null = 0.9 on GPU, 0.3 on CPU "
        "(vLLM refuses to start on CPU when that share of RAM is not free)."))
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one model is split over.")
    max_model_len: int | None = Field(None, ge=16, description="Context vLLM plans for; null = the model's own.")
    max_num_seqs: int | None = Field(None, ge=1, description="Sequences per engine step; null = vLLM's default.")
    enforce_eager: bool = Field(False, description="Skip CUDA graph capture (faster start, slower decoding).")
    kwargs: dict[str, Any] = Field({}, description="Any other vllm.LLM keyword arguments, passed as is.")


class ServerParams(Section):
    """How rdpt talks to a vLLM OpenAI-compatible server (models.<role>.server)."""

    batch_size: int = Field(16, ge=1, description=(
        "Sequences per scoring request, and sampling requests (one per prompt) in flight at once, per server URL "
        "(models.<role>.server may list several replicas)."))
    max_retries: int = Field(5, ge=0, description="Retries of a failed request (connection error, 5xx, 429).")
    backoff_s: float = Field(1.0, ge=0, description="First retry delay; doubles on each retry.")
    timeout_s: float = Field(600.0, gt=0, description="Per-request timeout.")
    api_key_env: str | None = Field(None, description=(
        "Environment variable holding the server's API key (`vllm serve --api-key`). Never put it in the URL: "
        "a server URL with user:password@ is refused."))
    verify: bool = Field(True, description=(
        "Verify an https server's TLS certificate. false accepts any certificate and logs a warning: a test "
        "server on a network you trust only; a private CA or self-signed certificate wants `ca_bundle`."))
    ca_bundle: str | None = Field(None, description=(
        "PEM file of the CA (or the server's self-signed certificate) to verify an https server with, instead "
        "of the system's CAs."))

    @model_validator(mode="after")
    def _one_tls_choice(self) -> ServerParams:
        if self.ca_bundle is not None and not self.verify:
            raise ValueError("server.ca_bundle is set but server.verify is false: verify with the bundle, or not")
        return self


class LaunchParams(Section):
    """How `distill` and the selection runs train: in this process, or under ``accelerate launch``."""

    num_processes: int = Field(1, ge=1, description=(
        "Training processes (one per GPU; on CPU, gloo processes). >1 or a config_file runs accelerate launch. "
        "The global batch is distill.batch_size x grad_accum x num_processes."))
    mixed_precision: Literal["no", "fp16", "bf16"] | None = Field(None, description=(
        "accelerate launch --mixed_precision; null = the config file's (or accelerate's default)."))
    config_file: str | None = Field(None, description=(
        "An accelerate config (e.g. configs/accelerate/fsdp.yaml): DDP, FSDP or DeepSpeed by config."))
    main_process_port: int | None = Field(None, ge=1, le=65535, description="Rendezvous port; null = a free one.")

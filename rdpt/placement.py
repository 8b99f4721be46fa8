"""Where a loaded HF model's weights sit: transformers' ``device_map`` handed through to accelerate (multi-GPU
sharding of a model bigger than one device, CPU/disk offload), and the devices inputs and the LM head use then::

    python -c "from rdpt.placement import load_kwargs; print(load_kwargs('auto', {'0': '70GiB'})[0])"
"""

from __future__ import annotations

import tempfile

import torch


def load_kwargs(device_map, max_memory) -> tuple[dict, tempfile.TemporaryDirectory]:
    """``from_pretrained`` keyword arguments for a ``device_map`` (with ``max_memory``), and the temporary
    offload folder they name: disk offload needs one, and it must live as long as the model."""
    offload = tempfile.TemporaryDirectory(prefix="rdpt-offload-")
    extra = {"device_map": device_map, "offload_folder": offload.name}
    if max_memory is not None:
        # a copy (transformers rewrites it in place), GPU indices as the ints accelerate expects
        extra["max_memory"] = {int(k) if str(k).isdigit() else k: v for k, v in max_memory.items()}
    return extra, offload


def placement(model) -> dict[str, int]:
    """How many modules of a dispatched model sit on each device (``hf_device_map``), for the log; ``{}`` when
    transformers put it all on one device (it sets no ``hf_device_map`` then)."""
    counts: dict[str, int] = {}
    for where in (getattr(model, "hf_device_map", None) or {}).values():
        counts[str(where)] = counts.get(str(where), 0) + 1
    return counts


def describe(model) -> str:
    """``device_map:cpu,cuda:0,...`` for a model spread over several devices, else the input device."""
    spread = sorted(placement(model))
    return "device_map:" + ",".join(spread) if len(spread) > 1 else str(input_device(model))


def module_device(module) -> torch.device:
    """The device a module computes on: its weights', or, when accelerate offloaded them (meta weights), its
    hook's execution device."""
    execution = getattr(getattr(module, "_hf_hook", None), "execution_device", None)
    if execution is not None:
        return torch.device(f"cuda:{execution}" if isinstance(execution, int) else execution)
    return module.weight.device


def input_device(model) -> torch.device:
    """The device a model's input ids must be on: its input embedding's (:func:`module_device`).

    Not ``model.device``: under a multi-device ``device_map`` that is the first parameter's device, and it is
    ``meta`` when the first parameters were offloaded."""
    return module_device(model.get_input_embeddings())

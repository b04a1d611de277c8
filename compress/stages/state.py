"""Resumable training state without pickle: tensors in safetensors, the rest in JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from compress.errors import ModelError


def save_training_state(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, meta: dict[str, Any]
) -> None:
    """Write ``path.safetensors`` (weights + optimizer tensors) and ``path.json`` (the rest)."""
    tensors = {
        f"model.{k}": v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()
    }
    opt = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for index, state in opt["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{key}"] = value.detach().cpu().contiguous().clone()
            else:
                scalars.setdefault(str(index), {})[key] = value
    tmp = Path(f"{path}.tmp")
    save_file(tensors, f"{tmp}.safetensors")
    Path(f"{tmp}.json").write_text(
        json.dumps(
            {"meta": meta, "param_groups": opt["param_groups"], "scalars": scalars}, indent=1
        )
    )
    # Rename last, so an interrupted save never replaces a good state with half of a new one.
    Path(f"{tmp}.safetensors").replace(f"{path}.safetensors")
    Path(f"{tmp}.json").replace(f"{path}.json")


def read_training_meta(path: Path) -> dict[str, Any]:
    """The meta dict of a saved training state, without touching any model."""
    try:
        return json.loads(Path(f"{path}.json").read_text())["meta"]
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"{path}.json: cannot resume from this training state ({exc})") from None


def load_training_state(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """Restore model and optimizer from ``save_training_state`` files; returns the meta dict."""
    try:
        tensors = load_file(f"{path}.safetensors")
        info = json.loads(Path(f"{path}.json").read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: cannot resume from this training state ({exc})") from None
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for index, values in info.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(values)
    optimizer.load_state_dict({"state": state, "param_groups": info["param_groups"]})
    return info["meta"]

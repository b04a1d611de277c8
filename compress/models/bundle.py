"""A Bundle is a network plus its PoseSpec; a checkpoint is safetensors plus a small JSON.

``NAME.safetensors`` holds the weights and ``NAME.json`` the architecture name, its
arguments, the PoseSpec and training provenance. Nothing is ever unpickled.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from compress.errors import ModelError
from compress.models.registry import build_architecture
from compress.models.shapes import apply_shapes
from compress.pose.spec import PoseSpec

CHECKPOINT_FORMAT = 1


@dataclass
class Quantization:
    """How a quantized bundle was made: the float network it came from and the decisions
    (quantizer settings, layers kept in float, calibration) every export target must share."""

    float_model: nn.Module
    settings: dict[str, Any] = field(default_factory=dict)
    # The calibration images (float32 NCHW batches): targets with their own quantizer
    # (ONNX Runtime) calibrate on exactly these.
    calibration: list[torch.Tensor] = field(default_factory=list)


@dataclass
class Bundle:
    model: nn.Module
    spec: PoseSpec
    architecture: str
    arguments: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    # Set by the quantize stage; ``model`` is then the converted INT8 (PT2E) graph.
    quantization: Quantization | None = None
    # Layers whose channel counts differ from what ``arguments`` build (after pruning).
    layer_shapes: dict[str, dict[str, int]] = field(default_factory=dict)

    @classmethod
    def build(cls, architecture: str, spec: PoseSpec, **arguments: Any) -> Bundle:
        model = build_architecture(architecture, spec, **arguments)
        return cls(model, spec, architecture, dict(arguments))

    def copy(self) -> Bundle:
        """A deep copy: stages return new bundles and never touch their input."""
        quantization = None
        if self.quantization is not None:
            quantization = Quantization(
                copy.deepcopy(self.quantization.float_model),
                dict(self.quantization.settings),
                list(self.quantization.calibration),
            )
        return Bundle(
            copy.deepcopy(self.model),
            self.spec,
            self.architecture,
            dict(self.arguments),
            dict(self.provenance),
            quantization,
            {k: dict(v) for k, v in self.layer_shapes.items()},
        )


PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl")


def refuse_pickle(path: Path) -> None:
    if Path(path).suffix in PICKLE_SUFFIXES:
        raise ModelError(
            f"{path}: a pickle file; pocket never unpickles by default (a pickle can run code). "
            "Convert its weights once with: pocket checkpoint SRC DST --from-pickle "
            "--architecture NAME (loads with torch.load(weights_only=True))"
        )


def read_pickled_weights(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a PyTorch pickle, with ``weights_only=True``: anything but tensors and
    plain containers is refused, so a malicious pickle cannot run code."""
    import pickle

    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelError(f"{path}: not found") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: refused: not a plain weights pickle ({first})") from None
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]  # Lightning-style checkpoints
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ModelError(f"{path}: expected a dict of tensors (a state_dict)")
    return {str(k).removeprefix("module."): v for k, v in data.items()}


def checkpoint_paths(path: Path) -> tuple[Path, Path]:
    """``x``, ``x.json`` or ``x.safetensors`` -> (weights, config)."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".json", ".safetensors") else path
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


def save_bundle(
    bundle: Bundle, path: Path, dtype: torch.dtype = torch.float32
) -> tuple[Path, Path]:
    """Write weights (floating tensors stored as ``dtype``) and config; returns both paths."""
    if bundle.quantization is not None:
        raise ModelError(
            f"{path}: a quantized network is saved by exporting it (pocket export), "
            "not as a float checkpoint"
        )
    weights_path, config_path = checkpoint_paths(path)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {
        k: (v.detach().to(dtype) if v.is_floating_point() else v.detach())
        .cpu()
        .contiguous()
        .clone()
        for k, v in bundle.model.state_dict().items()
    }
    save_file(tensors, str(weights_path), metadata={"format": "pt"})
    config = {
        "format": CHECKPOINT_FORMAT,
        "architecture": bundle.architecture,
        "arguments": bundle.arguments,
        "storage_dtype": str(dtype).removeprefix("torch."),
        "spec": json.loads(bundle.spec.to_json()),
        "provenance": bundle.provenance,
    }
    if bundle.layer_shapes:
        config["layer_shapes"] = bundle.layer_shapes
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    return weights_path, config_path


def load_bundle(path: Path, spec: PoseSpec | None = None) -> Bundle:
    """Load a checkpoint; ``spec`` overrides the stored one (a user model's spec from a recipe)."""
    refuse_pickle(path)
    weights_path, config_path = checkpoint_paths(path)
    try:
        config = json.loads(config_path.read_text())
    except FileNotFoundError:
        raise ModelError(f"{config_path}: checkpoint config not found") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{config_path}: not a readable checkpoint config ({exc})") from None
    if not isinstance(config, dict) or "architecture" not in config:
        raise ModelError(f"{config_path}: missing 'architecture'")
    if spec is None:
        if "spec" not in config:
            raise ModelError(f"{config_path}: no PoseSpec stored; give one")
        spec = PoseSpec.model_validate(config["spec"])
    arguments = config.get("arguments") or {}
    model = build_architecture(config["architecture"], spec, **arguments)
    layer_shapes = config.get("layer_shapes") or {}
    apply_shapes(model, layer_shapes)
    try:
        tensors = load_file(str(weights_path))
    except FileNotFoundError:
        raise ModelError(f"{weights_path}: checkpoint weights not found") from None
    except (SafetensorError, OSError) as exc:
        raise ModelError(f"{weights_path}: not a valid safetensors file ({exc})") from None
    load_state(model, tensors, str(weights_path))
    return Bundle(
        model,
        spec,
        config["architecture"],
        arguments,
        config.get("provenance") or {},
        layer_shapes=layer_shapes,
    )


def load_state(model: nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Copy ``tensors`` into ``model``, naming the first mismatches when they do not fit."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    wrong = [
        f"{k}: checkpoint {tuple(tensors[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in tensors and tensors[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} (first: {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} (first: {', '.join(unexpected[:3])})")
        if wrong:
            parts.append(f"shape mismatch {len(wrong)} (first: {'; '.join(wrong[:3])})")
        raise ModelError(f"{source}: weights do not fit the architecture: {'; '.join(parts)}")
    for k, v in tensors.items():
        if v.is_floating_point() != expected[k].is_floating_point():
            raise ModelError(
                f"{source}: tensor {k} is {str(v.dtype).removeprefix('torch.')}, "
                f"the architecture expects {str(expected[k].dtype).removeprefix('torch.')}"
            )
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise ModelError(f"{source}: tensor {k} holds NaN or Inf values")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()})

"""A reference executor for Core ML packages on machines where Core ML cannot run (Linux).

It reads the ML program from the saved ``.mlpackage`` (not from the PyTorch model) and runs
it op by op with torch on the CPU. Every op's result is stored in the dtype the program
declares for it, so a program that computes in fp16 is rounded to fp16 after every op (the
arithmetic inside an op is fp32, as Apple's engines accumulate). Compressed weights
(``constexpr_*``) are decompressed by coremltools' own definitions of those ops. An op this
executor does not know is refused by name. Figures produced with it say so: they are not
Core ML's own numbers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from compress.errors import RuntimeFailure
from compress.runtimes import Runner

EXECUTOR = "pocket MIL reference executor (torch, CPU)"


def load_program(path: Path):
    """(spec, main function) of a saved .mlpackage; works without Core ML."""
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto.load import load as milproto_load

    try:
        model = ct.models.MLModel(str(path), skip_model_load=True)
        spec = model.get_spec()
        program = milproto_load(spec, spec.specificationVersion, file_weights_dir=model.weights_dir)
    except Exception as exc:  # coremltools raises many types for a broken package
        raise RuntimeFailure(f"{path}: not a readable Core ML package ({exc})") from None
    return spec, program.functions["main"]


def _torch_dtype(builtin) -> torch.dtype:
    from coremltools.converters.mil.mil import types

    table = {
        types.fp16: torch.float16,
        types.fp32: torch.float32,
        types.int8: torch.int8,
        types.uint8: torch.uint8,
        types.int16: torch.int16,
        types.int32: torch.int32,
        types.bool: torch.bool,
    }
    return table.get(builtin, torch.float32)


def _pair(value) -> list[int]:
    return [int(v) for v in np.atleast_1d(value)]


def _conv(
    x, weight, bias=None, strides=None, pad_type="valid", pad=None, dilations=None, groups=1, **_
):
    strides = _pair(strides) if strides is not None else [1, 1]
    dilations = _pair(dilations) if dilations is not None else [1, 1]
    x, w = x.float(), weight.float()
    if pad_type == "custom":
        top, bottom, left, right = _pair(pad)
        x = F.pad(x, (left, right, top, bottom))
        padding: Any = 0
    elif pad_type == "same":
        padding = "same"
    else:
        padding = 0
    b = bias.float() if bias is not None else None
    return F.conv2d(x, w, b, strides, padding, dilations, int(groups))


def _conv_transpose(
    x,
    weight,
    bias=None,
    strides=None,
    pad_type="valid",
    pad=None,
    dilations=None,
    groups=1,
    output_shape=None,
    **_,
):
    strides = _pair(strides) if strides is not None else [1, 1]
    dilations = _pair(dilations) if dilations is not None else [1, 1]
    top, bottom, left, right = _pair(pad) if pad is not None else [0, 0, 0, 0]
    if top != bottom or left != right:
        raise RuntimeFailure("conv_transpose with asymmetric padding is not supported")
    b = bias.float() if bias is not None else None
    return F.conv_transpose2d(
        x.float(), weight.float(), b, strides, [top, left], 0, int(groups), dilations
    )


def _quantize(input, scale, zero_point=0, output_dtype="int8", axis=None, **_):
    lo, hi = (-128, 127) if str(output_dtype) == "int8" else (0, 255)
    scale, zero = _along(scale, input, axis), _along(zero_point, input, axis)
    q = torch.clamp(torch.round(input.float() / scale) + zero.float(), lo, hi)
    return q.to(torch.int8 if lo < 0 else torch.uint8)


def _dequantize(input, scale, zero_point=0, axis=None, **_):
    scale, zero = _along(scale, input, axis), _along(zero_point, input, axis)
    return (input.float() - zero.float()) * scale.float()


def _along(value: torch.Tensor, like: torch.Tensor, axis) -> torch.Tensor:
    """A per-axis parameter shaped to broadcast against ``like``."""
    value = torch.as_tensor(value)
    if value.dim() == 0 or axis is None:
        return value
    shape = [1] * like.dim()
    shape[int(axis)] = -1
    return value.reshape(shape)


def _resize(x, height, width, mode: str, align_corners=None) -> torch.Tensor:
    corners = bool(align_corners) if mode == "bilinear" else None
    scale = (float(height), float(width))
    return F.interpolate(x.float(), scale_factor=scale, mode=mode, align_corners=corners)


def _pool(kind: str) -> Callable:
    def pool(x, kernel_sizes, strides, pad_type="valid", pad=None, ceil_mode=False, **kw):
        k, s = _pair(kernel_sizes), _pair(strides)
        if pad_type == "custom":
            top, bottom, left, right = _pair(pad)
            value = float("-inf") if kind == "max" else 0.0
            x = F.pad(x.float(), (left, right, top, bottom), value=value)
        fn = F.max_pool2d if kind == "max" else F.avg_pool2d
        return fn(x.float(), k, s, 0, ceil_mode=bool(ceil_mode))

    return pool


OPS: dict[str, Callable[..., torch.Tensor]] = {
    "cast": lambda x, dtype, **_: x.to(_dtype_name(dtype)),
    "add": lambda x, y, **_: x.float() + y.float(),
    "sub": lambda x, y, **_: x.float() - y.float(),
    "mul": lambda x, y, **_: x.float() * y.float(),
    "real_div": lambda x, y, **_: x.float() / y.float(),
    "maximum": lambda x, y, **_: torch.maximum(x.float(), y.float()),
    "minimum": lambda x, y, **_: torch.minimum(x.float(), y.float()),
    "relu": lambda x, **_: torch.relu(x.float()),
    "relu6": lambda x, **_: torch.clamp(x.float(), 0, 6),
    "clip": lambda x, alpha, beta, **_: torch.clamp(x.float(), float(alpha), float(beta)),
    "sigmoid": lambda x, **_: torch.sigmoid(x.float()),
    "sigmoid_hard": lambda x, alpha=0.2, beta=0.5, **_: torch.clamp(
        float(alpha) * x.float() + float(beta), 0, 1
    ),
    "silu": lambda x, **_: F.silu(x.float()),
    "tanh": lambda x, **_: torch.tanh(x.float()),
    "conv": _conv,
    "conv_transpose": _conv_transpose,
    "batch_norm": lambda x, mean, variance, gamma=None, beta=None, epsilon=1e-5, **_: F.batch_norm(
        x.float(),
        mean.float(),
        variance.float(),
        None if gamma is None else gamma.float(),
        None if beta is None else beta.float(),
        False,
        0.0,
        float(epsilon),
    ),
    "upsample_nearest_neighbor": lambda x, scale_factor_height=1, scale_factor_width=1, **_: (
        _resize(x, scale_factor_height, scale_factor_width, "nearest")
    ),
    "upsample_bilinear": lambda x, scale_factor_height=1, scale_factor_width=1, **kw: _resize(
        x, scale_factor_height, scale_factor_width, "bilinear", kw.get("align_corners")
    ),
    "concat": lambda values, axis, interleave=False, **_: torch.cat(
        [v.float() for v in values], int(axis)
    ),
    "reshape": lambda x, shape, **_: x.reshape([int(s) for s in shape]),
    "transpose": lambda x, perm, **_: x.permute([int(p) for p in perm]),
    "max_pool": _pool("max"),
    "avg_pool": _pool("avg"),
    "quantize": _quantize,
    "dequantize": _dequantize,
}


def _dtype_name(name) -> torch.dtype:
    return {
        "fp16": torch.float16,
        "fp32": torch.float32,
        "int32": torch.int32,
        "int8": torch.int8,
        "uint8": torch.uint8,
        "bool": torch.bool,
    }[str(name)]


def _constant(value) -> Any:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, np.generic):
        return value.item()
    return value


class MilProgram:
    """A loaded ML program: ``program({input_name: array})`` -> {output_name: tensor}."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.spec, self.function = load_program(self.path)
        self.inputs = {name: _torch_dtype(var.dtype) for name, var in self.function.inputs.items()}
        self.outputs = [var.name for var in self.function.outputs]
        self.constants: dict[str, Any] = {}
        for op in self.function.operations:  # decompress once, as Core ML does at load
            if op.op_type == "const":
                self.constants[op.outputs[0].name] = _constant(op.outputs[0].val)
            elif op.op_type.startswith("constexpr_"):
                self.constants[op.outputs[0].name] = _constant(op.materialized_val_inference())
            elif op.op_type not in OPS:
                raise RuntimeFailure(
                    f"{path}: the reference executor does not know op {op.op_type!r} "
                    f"({op.name}); Core ML packages with it can only be checked on macOS"
                )

    def __call__(self, feeds: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        env: dict[str, Any] = dict(self.constants)
        for name, dtype in self.inputs.items():
            env[name] = feeds[name].to(dtype)
        for op in self.function.operations:
            if op.op_type == "const" or op.op_type.startswith("constexpr_"):
                continue
            args = {}
            for key, var in op.inputs.items():
                if isinstance(var, list | tuple):
                    args[key] = [self._value(v, env) for v in var]
                else:
                    args[key] = self._value(var, env)
            result = OPS[op.op_type](**args)
            out = op.outputs[0]
            env[out.name] = result.to(_torch_dtype(out.dtype))
        return {name: env[name] for name in self.outputs}

    @staticmethod
    def _value(var, env: dict[str, Any]) -> Any:
        if var.name in env:
            return env[var.name]
        return _constant(var.val)


class CoremlReferenceRunner(Runner):
    """Runs a .mlpackage with the reference executor; float32 NCHW in and out."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        self.name, self.threads, self.path = EXECUTOR, threads, Path(path)
        start = time.perf_counter()
        self.program = MilProgram(self.path)
        self.load_seconds = time.perf_counter() - start
        (self.input,) = self.program.inputs
        self.output = self.program.outputs[0]
        self.pixels = image_input_normalization(self.path)

    def prepare(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        image = image.float()
        if self.pixels is not None:  # image inputs take pixels: undo the normalisation
            mean, std = self.pixels
            image = image * std + mean
        return {self.input: image}

    def invoke(self, prepared: dict[str, torch.Tensor]) -> Any:
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            with torch.no_grad():
                return self.program(prepared)[self.output]
        finally:
            torch.set_num_threads(previous)

    def outputs(self, raw: Any) -> torch.Tensor:
        return raw.float()


def image_input_normalization(path: Path) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(mean, std) as (1, 3, 1, 1) tensors when the package takes images (pixels 0..255 in,
    normalisation inside the model), from pocket's metadata in the package; else None."""
    import json

    from compress.export.coreml import read_metadata
    from compress.export.metadata import METADATA_KEY

    raw = read_metadata(path).get(METADATA_KEY)
    if raw is None:
        return None
    meta = json.loads(raw)
    if meta.get("input", {}).get("kind") != "image":
        return None
    norm = meta["input"]["normalization"]
    return (
        torch.tensor(norm["mean"], dtype=torch.float32).view(1, 3, 1, 1),
        torch.tensor(norm["std"], dtype=torch.float32).view(1, 3, 1, 1),
    )

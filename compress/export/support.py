"""Which operations each format takes, as data, checked before any conversion work.

``KNOWN_UNSUPPORTED`` lists operations measured to fail with the pinned toolchain (the
conversion error in the comment); a network holding one fails that format at once, with the
operation and the module that uses it named. ``VERIFIED`` is what the built-in networks use,
converted on every format; when a conversion fails for another reason, the operations outside
it are named as the likely cause.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch

from compress.errors import UnsupportedOperationError

VERIFIED = frozenset(
    {
        "aten.add.Tensor",
        "aten.batch_norm.default",
        "aten.conv2d.default",
        "aten.conv_transpose2d.input",
        "aten.hardtanh_.default",
        "aten.max_pool2d.default",
        "aten.relu_.default",
        "aten.upsample_nearest2d.vec",
    }
)

KNOWN_UNSUPPORTED: dict[str, frozenset[str]] = {
    # litert-torch 0.10: "Lowering not found: aten.erfinv.default"; "Only 1D FFT on the last
    # dimension is currently supported."
    "tflite": frozenset({"aten.erfinv.default", "aten.fft_rfft2.default"}),
    # coremltools 9.0: "Unsupported fx node erfinv / fft_rfft2"
    "coreml": frozenset({"aten.erfinv.default", "aten.fft_rfft2.default"}),
    # torch.onnx (dynamo) 2.13: no translation for erfinv
    "onnx": frozenset({"aten.erfinv.default"}),
}


def operations(model: torch.nn.Module, example: torch.Tensor) -> list[tuple[str, str]]:
    """(operation, module path) for every operation in the network's exported graph."""
    program = torch.export.export(copy.deepcopy(model).eval(), (example,), strict=False)
    found = []
    for node in program.graph.nodes:
        if node.op != "call_function":
            continue
        stack = node.meta.get("nn_module_stack") or {}
        path = list(stack.values())[-1][0] if stack else "(top level)"
        found.append((str(node.target), path or "(top level)"))
    return found


def _describe(ops: Iterable[tuple[str, str]]) -> str:
    by_op: dict[str, list[str]] = {}
    for op, path in ops:
        by_op.setdefault(op, [])
        if path not in by_op[op]:
            by_op[op].append(path)
    return "; ".join(f"{op} (in {', '.join(paths[:3])})" for op, paths in by_op.items())


def check_supported(fmt: str, variant: str, ops: list[tuple[str, str]]) -> None:
    """Fail at once, naming operation, module and format, on a known-unsupported operation."""
    bad = [(op, path) for op, path in ops if op in KNOWN_UNSUPPORTED.get(fmt, frozenset())]
    if bad:
        raise UnsupportedOperationError(f"{fmt}:{variant} cannot take {_describe(bad)}")


def conversion_failed(
    fmt: str, variant: str, ops: list[tuple[str, str]], exc: BaseException
) -> UnsupportedOperationError:
    """The error for a failed conversion: the converter's words and the unverified ops."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    unverified = [(op, path) for op, path in ops if op not in VERIFIED]
    suspects = (
        f"; operations outside the verified set: {_describe(unverified)}" if unverified else ""
    )
    return UnsupportedOperationError(f"{fmt}:{variant}: conversion failed: {first}{suspects}")

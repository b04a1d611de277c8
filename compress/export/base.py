"""What every exporter shares: targets, the artifact record, the export context.

An exporter is a small class with a ``name``, the ``variants`` it supports (described, so the
CLI and errors can list them) and ``export(context, variant, folder) -> Artifact``. What each
target supports is data, checked before any work starts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from compress.models.bundle import Bundle


@dataclass(frozen=True)
class Target:
    format: str
    variant: str

    def __str__(self) -> str:
        return f"{self.format}:{self.variant}"


@dataclass
class Artifact:
    """One exported file or package, with what an app needs to feed and read it."""

    path: Path
    format: str
    variant: str
    bytes: int
    sha256: str
    inputs: list[dict[str, Any]] = field(default_factory=list)  # name, shape, dtype, layout
    outputs: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. operations left off the accelerator

    @property
    def target(self) -> Target:
        return Target(self.format, self.variant)


@dataclass
class ExportOptions:
    nhwc: bool = False  # TFLite: NHWC input/output (Android camera frames)
    int8_io: bool = False  # TFLite int8: int8 input/output instead of float
    onnx_opset: int = 18
    coreml_target: str = "iOS17"
    coreml_image_input: bool = False  # Core ML: ImageType input with the spec's normalisation


# The targets each option acts on: a format, and its one variant (None: all of them).
OPTION_SCOPE: dict[str, tuple[str, str | None]] = {
    "nhwc": ("tflite", None),
    "int8_io": ("tflite", "int8"),
    "onnx_opset": ("onnx", None),
    "coreml_target": ("coreml", None),
    "coreml_image_input": ("coreml", None),
}


def options_without_target(names: Iterable[str], targets: Iterable[Target]) -> dict[str, str]:
    """Of the options a user set, those that act on none of ``targets``, each with the
    targets it would act on (``"tflite:int8"``, ``"coreml targets"``): a choice that would
    otherwise be dropped without a word."""
    targets = list(targets)
    unused = {}
    for name in names:
        fmt, variant = OPTION_SCOPE[name]
        if not any(t.format == fmt and variant in (None, t.variant) for t in targets):
            unused[name] = f"{fmt} targets" if variant is None else f"{fmt}:{variant}"
    return unused


@dataclass
class ExportContext:
    """The float network, the quantized one (if a quantize stage ran), calibration images and
    the metadata written into every artifact."""

    bundle: Bundle
    metadata: dict[str, Any]
    quantized: Bundle | None = None
    calibration: list[torch.Tensor] = field(default_factory=list)
    options: ExportOptions = field(default_factory=ExportOptions)

    _memo: dict[Any, Any] = field(default_factory=dict, repr=False)

    @property
    def example(self) -> torch.Tensor:
        return torch.zeros(1, 3, *self.bundle.spec.input_size)

    def memo(self, key: Any, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per key (the network's operations; the float conversion the
        variants of one format share)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def operations(self) -> list[tuple[str, str]]:
        """(operation, module path) of the float network, computed once."""
        from compress.export.support import operations

        return self.memo("operations", lambda: operations(self.bundle.model, self.example))


class Exporter:
    name: ClassVar[str]
    # variant -> one line on what it is; the registry validates targets against this.
    variants: ClassVar[dict[str, str]]
    # variants that need the quantize stage's network
    needs_quantized: ClassVar[frozenset[str]] = frozenset()

    def export(self, context: ExportContext, variant: str, folder: Path) -> Artifact:
        raise NotImplementedError


def file_digest(path: Path) -> tuple[int, str]:
    """(bytes, sha256) of a file, or of every file in a package folder in a fixed order."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    size = 0
    for f in files:
        if path.is_dir():
            digest.update(str(f.relative_to(path)).encode() + b"\0")
        data = f.read_bytes()
        digest.update(data)
        size += len(data)
    return size, digest.hexdigest()

"""Exporters: one module per format behind one small interface, registered by name.

``parse_targets(["tflite:int8", "onnx:fp32"])`` checks names against what each exporter
supports before any work starts; an unknown or duplicate name is an error listing the known
ones. Exporter modules import their heavy toolchains only when they run.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from compress.errors import RecipeError
from compress.export.base import (
    Artifact,
    ExportContext,
    Exporter,
    ExportOptions,
    Target,
    options_without_target,
)

_REGISTRY: dict[str, type[Exporter]] = {}

__all__ = [
    "Artifact",
    "ExportContext",
    "ExportOptions",
    "Exporter",
    "Target",
    "exporter",
    "formats",
    "options_without_target",
    "parse_targets",
    "register_exporter",
]


def register_exporter(cls: type[Exporter]) -> type[Exporter]:
    if cls.name in _REGISTRY:
        raise RecipeError(f"export format {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def _load_builtin() -> None:
    from compress.export import coreml, onnx, tflite  # noqa: F401  (registers the exporters)


def formats() -> dict[str, type[Exporter]]:
    _load_builtin()
    return dict(_REGISTRY)


def exporter(name: str) -> Exporter:
    known = formats()
    if name not in known:
        near = difflib.get_close_matches(name, list(known), n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise RecipeError(f"unknown export format {name!r}{hint} (known: {', '.join(known)})")
    return known[name]()


def parse_targets(specs: Iterable[str]) -> list[Target]:
    """``format:variant`` strings to targets; every name checked, duplicates refused."""
    targets: list[Target] = []
    for spec in specs:
        fmt, sep, variant = spec.partition(":")
        cls = type(exporter(fmt))
        if not sep or variant not in cls.variants:
            near = difflib.get_close_matches(variant, list(cls.variants), n=1)
            hint = f"; did you mean '{fmt}:{near[0]}'?" if near and sep else ""
            raise RecipeError(
                f"export target {spec!r}: {fmt} variants are "
                f"{', '.join(f'{fmt}:{v}' for v in cls.variants)}{hint}"
            )
        target = Target(fmt, variant)
        if target in targets:
            raise RecipeError(f"export target {spec!r} is listed twice")
        targets.append(target)
    return targets

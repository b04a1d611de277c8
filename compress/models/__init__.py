"""Pose networks: the architecture registry, the built-in student and teacher, and bundles."""

from compress.models.bundle import Bundle, load_bundle, save_bundle
from compress.models.registry import architecture_names, build_architecture, register_architecture

__all__ = [
    "Bundle",
    "architecture_names",
    "build_architecture",
    "load_bundle",
    "register_architecture",
    "save_bundle",
]

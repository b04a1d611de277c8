"""pocket: compress, export and verify 2D pose networks for mobile apps."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]

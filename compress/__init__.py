"""pocket: compress, export and verify 2D pose networks for mobile apps."""

from __future__ import annotations

import logging

__version__ = "0.1.0"

__all__ = ["__version__"]

# Start-up noise that says nothing about the user's run: torchao warns that its CUDA-only
# kernels do not load on a CPU build, and torch that torchao registers an enum the old way.
logging.getLogger("torchao").setLevel(logging.ERROR)
logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)

"""Writing results so that nothing half-written ever looks finished."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from compress.errors import OutputError


@contextmanager
def atomic_directory(target: Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``target`` that becomes ``target`` only on success.

    An existing ``target`` is refused unless ``force``; then it is replaced whole, never
    mixed with new files. On any error the temporary folder is removed.
    """
    target = Path(target)
    if target.exists() and not force:
        raise OutputError(f"{target} already exists; pass --force to replace it")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    except OSError as exc:
        raise OutputError(f"cannot create a folder next to {target}: {exc.strerror}") from None
    try:
        yield work
        if target.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, trash / target.name)
            os.replace(work, target)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(work, target)
    except OSError as exc:
        shutil.rmtree(work, ignore_errors=True)
        raise OutputError(f"cannot write {target}: {exc.strerror}") from None
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def write_json(path: Path, data: Any) -> None:
    """Deterministic JSON: the same data always gives the same bytes."""
    Path(path).write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")

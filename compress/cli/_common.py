"""What every command shares: the console and the mapping of errors to exit codes."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from compress.errors import PocketError

console = Console()
err_console = Console(stderr=True, soft_wrap=True)
F = TypeVar("F", bound=Callable[..., Any])

_state = {"debug": False}


def set_debug(value: bool) -> None:
    _state["debug"] = value


def _caused_by_interrupt(exc: BaseException) -> bool:
    """Ctrl-C landing inside a native extension can surface as that library's own error
    (pydantic-core reports "KeyboardInterrupt" in a serialization error, for one)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt) or (
            type(current).__module__.startswith("pydantic_core")
            and "KeyboardInterrupt" in str(current)
        ):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _interrupted() -> None:
    if _state["debug"]:
        raise KeyboardInterrupt
    err_console.print(
        "[bold red]interrupted:[/] nothing half-written was kept; finished distill and "
        "prune stages are cached, so running the same command again resumes after them",
        highlight=False,
    )
    raise typer.Exit(130) from None


def handle_errors(fn: F) -> F:
    """Turn a PocketError into a one-line message and its exit code (traceback with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PocketError as exc:
            if _state["debug"]:
                raise
            # The message is text, not markup: "[onnx]" in it must print as written.
            message = escape(f"{type(exc).__name__}: {exc}")
            err_console.print(f"[bold red]error:[/] {message}", highlight=False)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            _interrupted()
        except Exception as exc:
            if not _caused_by_interrupt(exc):
                raise
            _interrupted()

    return wrapper  # type: ignore[return-value]

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


def install_interrupt_handler() -> None:
    """Ctrl-C raises KeyboardInterrupt, as Python's own handler does, except where Python
    would lose it: an exception raised inside a garbage-collector callback is printed as
    "ignored" and dropped. JAX, which the TFLite quantizer imports, registers a callback that
    runs on every collection, so a Ctrl-C landing during a deep copy could vanish and the run
    go on. One that lands inside such a callback is delivered again a moment later."""
    import gc
    import os
    import signal
    import threading

    def handler(_signum: int, frame: Any) -> None:
        callbacks = {getattr(c, "__code__", None) for c in gc.callbacks}
        while frame is not None:
            if frame.f_code in callbacks:
                again = threading.Timer(0.02, os.kill, (os.getpid(), signal.SIGINT))
                again.daemon = True
                again.start()
                return
            frame = frame.f_back
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, handler)


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

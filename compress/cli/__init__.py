"""The ``pocket`` command: a thin layer over the library, which does all the work."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from compress import __version__
from compress.cli import data, evaluate, export, models, run, spec, verify
from compress.cli._common import install_interrupt_handler, set_debug

app = typer.Typer(
    name="pocket",
    help="Compress, export and verify 2D pose networks for mobile apps.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="markdown",  # docstring paragraphs reflow to the terminal's width
)
app.add_typer(data.app, name="data")
app.add_typer(spec.app, name="spec")
app.command("eval")(evaluate.eval_command)
app.command("inspect")(models.inspect_command)
app.command("train")(models.train_command)
app.command("checkpoint")(models.convert_checkpoint_command)
app.command("run")(run.run_command)
app.command("export")(export.export_command)
app.command("verify")(verify.verify_command)
app.add_typer(run.app, name="recipe")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pocket {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show full tracebacks for errors.")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    set_debug(debug)


def main() -> None:
    install_interrupt_handler()
    try:
        app()
    except Exception:
        # Anything that is not a PocketError is a bug in pocket: say so, with the traceback,
        # and exit with a code no check failure (1) or bad input (2) uses.
        import traceback

        traceback.print_exc()
        print("internal error: this is a bug in pocket, please report it", file=sys.stderr)
        sys.exit(70)

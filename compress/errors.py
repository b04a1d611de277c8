"""The error hierarchy of pocket.

Every error a user can cause is one of these, and its message names where the problem is
(file, key, layer or operator). The CLI maps them to exit codes: 2 for bad input, 1 for a
failed check; anything else escaping is a bug in pocket.
"""

from __future__ import annotations


class PocketError(Exception):
    """Base of every error pocket raises on purpose."""

    exit_code: int = 2


class RecipeError(PocketError):
    """A recipe (YAML) or a CLI option is invalid."""


class DataError(PocketError):
    """A dataset, annotation file or image is missing or malformed."""


class ModelError(PocketError):
    """A model or checkpoint cannot be built, loaded or run."""


class UnsupportedOperationError(PocketError):
    """An export target cannot take an operation of the model."""


class RuntimeFailure(PocketError):
    """An exported artifact failed to load or run in its runtime."""


class OutputError(PocketError):
    """A result cannot be written (existing folder, permissions, disk full)."""


class CheckFailed(PocketError):
    """A verification gate failed: the run worked but the result is not acceptable."""

    exit_code = 1

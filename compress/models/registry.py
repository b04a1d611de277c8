"""Architectures by name. A builder takes the PoseSpec plus keyword arguments."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from compress.errors import ModelError
from compress.pose.spec import PoseSpec

Builder = Callable[..., nn.Module]
_ARCHITECTURES: dict[str, Builder] = {}


def register_architecture(name: str) -> Callable[[Builder], Builder]:
    def decorate(builder: Builder) -> Builder:
        if name in _ARCHITECTURES:
            raise ModelError(f"architecture {name!r} is registered twice")
        _ARCHITECTURES[name] = builder
        return builder

    return decorate


def architecture_names() -> list[str]:
    _load_builtins()
    return sorted(_ARCHITECTURES)


def _import_builder(target: str) -> Builder:
    """``package.module:function`` -> the function (a user's own network)."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ModelError(f"{target!r}: a user model is written 'package.module:builder'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelError(f"{target!r}: cannot import module {module_name!r} ({exc})") from None
    builder = getattr(module, attr, None)
    if not callable(builder):
        raise ModelError(f"{target!r}: module {module_name!r} has no callable {attr!r}")
    return builder


def build_architecture(name: str, spec: PoseSpec, **kwargs: Any) -> nn.Module:
    """Build a registered architecture, or a user's ``package.module:builder``.

    Every builder is called as ``builder(spec, **kwargs)`` and must return an ``nn.Module``.
    """
    _load_builtins()
    builder = _import_builder(name) if ":" in name else _ARCHITECTURES.get(name)
    if builder is None:
        near = difflib.get_close_matches(name, _ARCHITECTURES, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise ModelError(
            f"unknown architecture {name!r}{hint} (known: {', '.join(sorted(_ARCHITECTURES))})"
        )
    try:
        model = builder(spec, **kwargs)
    except TypeError as exc:
        raise ModelError(f"architecture {name!r}: bad arguments {kwargs}: {exc}") from None
    except ModelError:
        raise
    except Exception as exc:  # a user's builder may raise anything; name it
        raise ModelError(
            f"architecture {name!r}: the builder raised {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(model, nn.Module):
        raise ModelError(
            f"architecture {name!r}: the builder returned {type(model).__name__}, not an nn.Module"
        )
    check_output(model, spec, name)
    return model


def check_output(model: nn.Module, spec: PoseSpec, name: str) -> None:
    """The network must map one input crop to one heatmap per keypoint at the spec's stride."""
    h, w = spec.input_size
    expected = (1, spec.num_keypoints, h // spec.heatmap_stride, w // spec.heatmap_stride)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(1, 3, h, w))
    except Exception as exc:  # a user's forward may raise anything; name it
        raise ModelError(
            f"architecture {name!r}: forward on a 1x3x{h}x{w} input raised "
            f"{type(exc).__name__}: {exc}"
        ) from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelError(
            f"architecture {name!r}: output {got} for a 1x3x{h}x{w} input; the pose spec "
            f"needs {expected} (one heatmap per keypoint at stride {spec.heatmap_stride})"
        )


def _load_builtins() -> None:
    # Imported for their registration side effect, on first use only.
    from compress.models import student, teacher  # noqa: F401

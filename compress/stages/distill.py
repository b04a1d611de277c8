"""Knowledge distillation: a teacher's heatmaps (and optionally features) train the student.

The loss mixes ground truth and teacher: ``w * loss(student, ground truth) + (1 - w) *
loss(student, teacher)``. For softmax heatmaps the teacher term is the KL divergence between
the two spatial distributions; for plain heatmaps it is MSE on the heatmaps. Feature
distillation adds MSE between named teacher layers and named student layers seen through a
learned 1x1 adapter (dropped after the stage). Runs under torchrun like training.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from compress import _dist
from compress.errors import RecipeError
from compress.models.bundle import Bundle
from compress.pose.spec import PoseSpec
from compress.stages._loop import fit_steps
from compress.stages.base import StageContext, set_eval
from compress.stages.configs import DistillConfig, DistillSettings
from compress.stages.losses import heatmap_mse, softmax_cross_entropy, softmax_kl


def check_teacher(student: PoseSpec, teacher: PoseSpec) -> None:
    """The teacher must see the same crops and predict the same joints on the same grid."""
    for what in ("keypoints", "input_size", "heatmap_stride", "heatmap_activation"):
        a, b = getattr(student, what), getattr(teacher, what)
        if a != b:
            raise RecipeError(
                f"the teacher's pose spec differs from the student's in {what}: "
                f"teacher {b!r}, student {a!r}"
            )


def find_layers(model: nn.Module, names: Sequence[str], who: str) -> dict[str, nn.Module]:
    modules = dict(model.named_modules())
    found = {}
    for name in names:
        if name not in modules:
            near = difflib.get_close_matches(name, [n for n in modules if n], n=3)
            hint = f"; did you mean {', '.join(repr(n) for n in near)}?" if near else ""
            raise RecipeError(
                f"the {who} has no layer {name!r}{hint} (list them with: pocket inspect)"
            )
        found[name] = modules[name]
    return found


class _Capture:
    """Forward hooks that keep the latest output of some layers."""

    def __init__(self, layers: dict[str, nn.Module]) -> None:
        self.outputs: dict[str, torch.Tensor] = {}
        self.handles = [m.register_forward_hook(self._hook(name)) for name, m in layers.items()]

    def _hook(self, name: str) -> Callable:
        def hook(_module, _inputs, output) -> None:
            self.outputs[name] = output

        return hook

    def close(self) -> None:
        for h in self.handles:
            h.remove()


class _Student(nn.Module):
    """The student plus its feature adapters: one module, so DDP syncs both."""

    def __init__(
        self,
        student: nn.Module,
        adapters: nn.ModuleList,
        capture: _Capture | None,
        names: list[str],
    ) -> None:
        super().__init__()
        self.student, self.adapters, self.capture, self.names = student, adapters, capture, names

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        out = self.student(x)
        if self.capture is None:
            return out, []
        return out, [
            a(self.capture.outputs[n]) for a, n in zip(self.adapters, self.names, strict=True)
        ]


def heatmap_distill_loss(kind: str, activation: str) -> Callable:
    kind = ("kl" if activation == "softmax" else "mse") if kind == "auto" else kind
    if kind == "kl":
        if activation != "softmax":
            raise RecipeError(
                "distill.loss 'kl' compares spatial softmax distributions; the pose spec's "
                f"heatmap_activation is {activation!r} (use 'mse')"
            )
        return softmax_kl
    if activation == "softmax":
        # MSE on the probability maps, scaled by the pixel count so values are O(1).
        def mse_of_softmax(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
            n = student.shape[-1] * student.shape[-2]
            p_s = torch.softmax(student.flatten(2), -1) * n
            p_t = torch.softmax(teacher.flatten(2), -1) * n
            return heatmap_mse(p_s.view_as(student), p_t.view_as(teacher))

        return mse_of_softmax
    return heatmap_mse


def distill_model(
    student: nn.Module,
    teacher: nn.Module,
    spec: PoseSpec,
    train_set,
    config: DistillSettings,
    seed: int = 0,
    console=None,
    description: str = "distill",
    train_mode: Callable[[nn.Module], None] | None = None,
) -> dict[str, Any]:
    """Train ``student`` in place from ``teacher`` (and ground truth); returns details."""
    activation = str(spec.heatmap_activation)
    gt_loss = softmax_cross_entropy if activation == "softmax" else heatmap_mse
    kd_loss = heatmap_distill_loss(config.loss, activation)
    w = config.ground_truth_weight
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    graph = isinstance(student, torch.fx.GraphModule)
    if not graph:
        student.to(memory_format=memory_format)
    teacher.to(_dist.device(), memory_format=memory_format)
    set_eval(teacher)

    capture_s = capture_t = None
    adapters = nn.ModuleList()
    if config.features:
        if graph:
            raise RecipeError(
                "feature distillation is not available for quantization-aware training"
            )
        try:
            s_layers = find_layers(student, [f.student for f in config.features], "student")
            t_layers = find_layers(teacher, [f.teacher for f in config.features], "teacher")
        except RecipeError as exc:
            raise RecipeError(f"distill.features: {exc}") from None
        capture_s, capture_t = _Capture(s_layers), _Capture(t_layers)
        probe = torch.zeros(1, 3, *spec.input_size)
        with torch.no_grad():
            was_training = student.training
            student.eval()
            student(probe)
            teacher(probe.to(_dist.device()))
            student.train(was_training)
        for pair in config.features:
            cs = capture_s.outputs[pair.student].shape[1]
            ct = capture_t.outputs[pair.teacher].shape[1]
            adapters.append(nn.Conv2d(cs, ct, 1))
    wrapped = _Student(student, adapters, capture_s, [f.student for f in config.features])

    def loss_of(module: nn.Module, batch: dict) -> torch.Tensor:
        images = batch["image"].contiguous(memory_format=memory_format)
        with torch.no_grad():
            t_out = teacher(images)
        s_out, s_feats = module(images)
        loss = w * gt_loss(s_out, batch["heatmaps"], batch["weights"])
        loss = loss + (1 - w) * kd_loss(s_out, t_out)
        for i, pair in enumerate(config.features):
            target = capture_t.outputs[pair.teacher]  # type: ignore[union-attr]
            pred = s_feats[i]
            if pred.shape[-2:] != target.shape[-2:]:
                pred = F.interpolate(pred, size=target.shape[-2:], mode="bilinear")
            loss = loss + config.feature_weight * F.mse_loss(pred, target)
        return loss

    def mode(module: nn.Module) -> None:
        (train_mode or (lambda m: m.train()))(module.student)
        module.adapters.train()

    try:
        losses = fit_steps(
            wrapped, loss_of, train_set, config, seed, console, description, train_mode=mode
        )
    finally:
        for capture in (capture_s, capture_t):
            if capture is not None:
                capture.close()
    if not graph:
        student.to(memory_format=torch.contiguous_format)
    teacher.to("cpu", memory_format=torch.contiguous_format)
    tail = losses[-50:]
    return {
        "steps": len(losses),
        "final_loss": sum(tail) / len(tail),
        "ground_truth_weight": w,
        "loss": config.loss,
        "features": [f.model_dump() for f in config.features],
    }


def distill(bundle: Bundle, config: DistillConfig, context: StageContext) -> tuple[Bundle, dict]:
    """The distill stage: the recipe's teacher trains a copy of ``bundle``."""
    if context.teacher is None:
        raise RecipeError("the distill stage needs a teacher: set model.teacher in the recipe")
    check_teacher(bundle.spec, context.teacher.spec)
    result = bundle.copy()
    details = distill_model(
        result.model,
        context.teacher.model,
        bundle.spec,
        context.train_set,
        config,
        seed=context.seed,
        console=context.console,
    )
    return result, details

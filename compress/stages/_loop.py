"""The optimisation loop shared by stages that fine-tune for a budget of steps (distillation,
fine-tuning between pruning steps, QAT): AdamW, warm-up + cosine, DDP under torchrun, a
progress bar (plain log lines when the output is not a terminal), a stop on non-finite input
images or a non-finite loss.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator

import torch
from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from compress import _dist
from compress.errors import DataError, ModelError


class StepSchedule(BaseModel):
    """Optimiser settings for a fixed number of steps (the part of a stage config it shares)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    steps: int = Field(default=500, ge=1)
    batch_size: int = Field(default=32, ge=1)
    learning_rate: float = Field(default=5e-4, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    warmup_steps: int = Field(default=50, ge=0)
    min_lr_ratio: float = Field(default=0.01, ge=0, le=1)
    workers: int = Field(default=1, ge=0)


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warm-up to 1, then cosine decay to ``min_ratio``."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def make_progress(console: Console, enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]:.3f}  lr {task.fields[lr]:.2e}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
    )


class PlainLog:
    """A line a minute when there is no live bar (CI, nohup, pipes)."""

    def __init__(self, console: Console, enabled: bool, total: int, first: int, batch: int):
        self.console, self.total, self.first, self.batch = console, total, first, batch
        self.enabled = enabled and not console.is_terminal
        self.start = self.last = time.perf_counter()

    def maybe(self, step: int, loss: float, lr: float) -> None:
        now = time.perf_counter()
        if not self.enabled or now - self.last <= 60:
            return
        self.last = now
        elapsed = now - self.start
        rate = (step - self.first) / max(elapsed, 1e-9)
        eta = (self.total - step) / max(rate, 1e-9)
        self.console.print(
            f"step {step}/{self.total}  loss {loss:.4f}  lr {lr:.2e}  "
            f"{rate * self.batch:.1f} samples/s  elapsed {elapsed / 60:.1f} min  "
            f"eta {eta / 60:.1f} min",
            soft_wrap=True,
        )


def check_finite(loss: torch.Tensor, where: str, batch: dict) -> None:
    """Stop on a NaN/Inf loss; under torchrun every rank stops together (no rank is left
    waiting in an all-reduce)."""
    if not _dist.all_true(bool(torch.isfinite(loss))):
        raise ModelError(
            f"training loss became {loss.item()} at {where} "
            f"(images {batch['image_id'][:4].tolist()}...); lower the learning rate"
        )


def check_inputs(batch: dict, where: str) -> None:
    """Stop before NaN/Inf input pixels reach the weights, naming the images that hold them;
    under torchrun every rank stops together."""
    finite = torch.isfinite(batch["image"]).flatten(1).all(1)
    if not _dist.all_true(bool(finite.all())):
        bad = batch["image_id"][~finite.to(batch["image_id"].device)].tolist()
        which = f"images {bad[:4]}" if bad else "another process's batch"
        raise DataError(
            f"input images hold NaN or Inf values at {where} ({which}); "
            "check the dataset and the normalization"
        )


def train_loader(
    train_set, batch_size: int, workers: int, sampler, generator: torch.Generator
) -> torch.utils.data.DataLoader:
    """Shuffled training batches (``sampler`` under torchrun), the last partial batch dropped
    when the split holds a full one per process.

    Worker processes are started afresh for every pass, not kept: a persistent worker keeps
    the copy of the dataset it was started with, so ``set_epoch`` would never reach it and
    every epoch would draw the first epoch's augmentation (and a resumed run another one).
    """
    return torch.utils.data.DataLoader(
        train_set,
        batch_size=batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=workers,
        drop_last=len(train_set) >= batch_size * _dist.world_size(),
        persistent_workers=False,
        generator=generator,
    )


def _batches(loader, sampler, train_set) -> Iterator[dict]:
    """Endless batches; each pass re-seeds augmentation and the distributed order."""
    epoch = 0
    while True:
        if hasattr(train_set, "set_epoch"):
            train_set.set_epoch(epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def fit_steps(
    trainable: torch.nn.Module,
    loss_of: Callable[[torch.nn.Module, dict], torch.Tensor],
    train_set,
    schedule: StepSchedule,
    seed: int,
    console: Console | None,
    description: str,
    train_mode: Callable[[torch.nn.Module], None] | None = None,
) -> list[float]:
    """Optimise ``trainable``'s parameters for ``schedule.steps`` steps of ``loss_of(module,
    batch)``; under torchrun ``module`` is the DistributedDataParallel wrapper. Returns the
    per-step losses (this rank's)."""
    if len(train_set) == 0:
        raise DataError("the training split has no annotated people")
    console = console or Console()
    distributed = _dist.init_from_env()
    main = _dist.is_main()
    torch.manual_seed(seed + _dist.rank())
    params = [p for p in trainable.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params, lr=schedule.learning_rate, weight_decay=schedule.weight_decay
    )
    sampler = (
        torch.utils.data.DistributedSampler(train_set, shuffle=True, seed=seed)
        if distributed
        else None
    )
    generator = torch.Generator()
    generator.manual_seed(seed)
    loader = train_loader(train_set, schedule.batch_size, schedule.workers, sampler, generator)
    where = _dist.device()
    trainable.to(where)
    module = (
        torch.nn.parallel.DistributedDataParallel(
            trainable, device_ids=[where.index] if where.type == "cuda" else None
        )
        if distributed
        else trainable
    )
    (train_mode or (lambda m: m.train()))(trainable)
    losses: list[float] = []
    log = PlainLog(console, main, schedule.steps, 0, schedule.batch_size)
    with make_progress(console, main) as progress:
        task = progress.add_task(description, total=schedule.steps, loss=float("nan"), lr=0.0)
        batches = _batches(loader, sampler, train_set)
        for step in range(schedule.steps):
            batch = _dist.to_device(next(batches), where)
            lr = schedule.learning_rate * lr_factor(
                step, schedule.steps, schedule.warmup_steps, schedule.min_lr_ratio
            )
            for group in optimizer.param_groups:
                group["lr"] = lr
            check_inputs(batch, f"{description} step {step + 1}")
            loss = loss_of(module, batch)
            check_finite(loss, f"{description} step {step + 1}", batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            progress.update(task, advance=1, loss=losses[-1], lr=lr)
            log.maybe(step + 1, losses[-1], lr)
    _dist.broadcast_buffers(trainable)
    _dist.barrier()
    trainable.to("cpu")  # stages hand on CPU networks
    return losses

"""Supervised training of a pose network on heatmap targets.

AdamW with linear warm-up and cosine decay, validation (OKS-AP, PCK) every epoch, the best
checkpoint kept, resumable from the last finished epoch. Under ``torchrun`` it runs as
DistributedDataParallel (gloo on CPU, nccl on GPUs) with a DistributedSampler; only rank 0
writes files or prints.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console

from compress import _dist
from compress.errors import DataError, ModelError, OutputError, RecipeError
from compress.models.bundle import Bundle, save_bundle
from compress.models.inspect import count_macs, count_params
from compress.pose.metrics import PoseMetrics, evaluate
from compress.stages._loop import (
    PlainLog,
    check_finite,
    check_inputs,
    lr_factor,
    make_progress,
    train_loader,
)
from compress.stages.base import StageReport
from compress.stages.losses import heatmap_mse, softmax_cross_entropy
from compress.stages.state import load_training_state, read_training_meta, save_training_state

LOSS_ACTIVATION = {"softmax_ce": "softmax", "mse": "none"}


class TrainConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    epochs: int = Field(default=30, ge=1)
    batch_size: int = Field(default=32, ge=1)
    learning_rate: float = Field(default=2e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    warmup_steps: int = Field(default=300, ge=0)
    min_lr_ratio: float = Field(default=0.01, ge=0, le=1)
    workers: int = Field(default=1, ge=0)
    seed: int = 0
    eval_every: int = Field(default=1, ge=1)
    max_steps: int | None = Field(default=None, ge=1)  # stop early (smoke tests)
    # softmax_ce needs spec.heatmap_activation 'softmax'; mse needs 'none'.
    loss: Literal["softmax_ce", "mse"] = "softmax_ce"
    # NHWC memory layout for convolutions: 1.63x faster training on this AVX-512 CPU
    # (benchmarks/train_speed.py).
    channels_last: bool = True


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# A resumed run must be the training that wrote its state. Its length may grow (a schedule
# recomputed for the new length), and workers or eval_every change no weights.
_NOT_IDENTITY = {"epochs", "max_steps", "eval_every", "workers"}
# What a training run writes into its folder (temporary names included).
_RUN_FILE = re.compile(r"(best|last)(\.tmp)?\.(safetensors|json)|metrics\.jsonl(\.tmp)?")


def run_identity(bundle: Bundle, config: TrainConfig, train_set, val_set) -> dict[str, str]:
    """Short digests of what defines a training run: the starting network (architecture,
    arguments, initial weights), the config but its length, and the data."""
    from compress.stages.cache import network_digest

    def data(dataset) -> Any:
        split = getattr(dataset, "split", None)
        if split is None:
            return len(dataset)
        return hashlib.sha256(Path(split.annotation_file).read_bytes()).hexdigest()

    parts = {
        "network": network_digest(bundle),
        "config": config.model_dump(mode="json", exclude=_NOT_IDENTITY),
        "data": [data(train_set), data(val_set)],
    }
    return {
        key: hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]
        for key, value in parts.items()
    }


def _open_run_dir(
    run_dir: Path, bundle: Bundle, identity: dict[str, str], resume: bool, force: bool
) -> dict[str, Any] | None:
    """Decide, identically on every rank, whether ``run_dir`` resumes (its state's meta is
    returned), starts fresh, or is refused: files of another run are never mixed with ours."""
    last = run_dir / "last"
    if resume and Path(f"{last}.json").exists() and not force:
        meta = read_training_meta(last)
        if meta.get("architecture") != bundle.architecture:
            raise ModelError(
                f"{last}.json: resume state is for {meta.get('architecture')!r}, "
                f"not {bundle.architecture!r}; use a new run folder or --force"
            )
        if "identity" not in meta:
            raise OutputError(
                f"{last}.json: written by an earlier pocket that did not record what it "
                "trained, so it cannot be resumed safely: pass --force to start over"
            )
        changed = [k for k, v in identity.items() if meta["identity"].get(k) != v]
        if changed:
            raise OutputError(
                f"{last}.json: the run in this folder trained another {' and '.join(changed)}; "
                "it resumes only the same training: pass --force to start over (its files "
                "are removed) or --out for another folder"
            )
        return meta
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        return None
    if not force:
        why = "has no resumable state (last.json)" if resume else "is not empty (--no-resume)"
        raise OutputError(
            f"{run_dir}: {why}; pass --force to start over (its files are removed) or --out "
            "for another folder"
        )
    foreign = sorted(p.name for p in run_dir.iterdir() if not _RUN_FILE.fullmatch(p.name))
    if foreign:
        raise OutputError(
            f"{run_dir}: --force removes a training run's files only, and this folder also "
            f"holds {', '.join(foreign[:3])}{' ...' if len(foreign) > 3 else ''}: "
            "choose another --out"
        )
    return None


def _summary(m: PoseMetrics) -> dict[str, float]:
    return {"ap": m.ap, "ap50": m.ap50, "ar": m.ar, "pck": m.pck}


def train(
    bundle: Bundle,
    config: TrainConfig,
    train_set,
    val_set,
    run_dir: Path,
    resume: bool = True,
    console: Console | None = None,
    force: bool = False,
    loss_fn: Callable[[torch.Tensor, dict], torch.Tensor] | None = None,
) -> tuple[Bundle, StageReport]:
    """Train a copy of ``bundle``; returns the best-validating weights and a report.

    ``run_dir`` receives ``best.{safetensors,json}``, ``last.{safetensors,json}`` (resume
    state) and ``metrics.jsonl`` (one line per epoch). A folder holding the same training
    resumes after its last finished epoch; one holding anything else is refused unless
    ``force``, which empties it first. ``loss_fn(output, batch)`` replaces the configured loss.
    """
    console = console or Console()
    activation = str(bundle.spec.heatmap_activation)
    if LOSS_ACTIVATION[config.loss] != activation:
        raise RecipeError(
            f"train.loss {config.loss!r} trains outputs for heatmap_activation "
            f"{LOSS_ACTIVATION[config.loss]!r}, but the pose spec says {activation!r}"
        )
    default_loss = softmax_cross_entropy if config.loss == "softmax_ce" else heatmap_mse
    distributed = _dist.init_from_env()
    main = _dist.is_main()
    if len(train_set) == 0:
        raise DataError("the training split has no annotated people")
    seed_everything(config.seed + _dist.rank())
    result = bundle.copy()
    model = result.model
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    where = _dist.device()
    params_before, macs_before = count_params(model), count_macs(model, bundle.spec)
    model.to(where)
    run_dir = Path(run_dir)
    identity = run_identity(bundle, config, train_set, val_set)
    resumed = _open_run_dir(run_dir, bundle, identity, resume, force)
    _dist.barrier()  # every rank has decided before rank 0 touches the folder
    if main:
        if resumed is None and run_dir.is_dir():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
    _dist.barrier()

    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    sampler = (
        torch.utils.data.DistributedSampler(train_set, shuffle=True, seed=config.seed)
        if distributed
        else None
    )
    # Re-seeded every epoch, so a resumed run sees the same order as an uninterrupted one.
    shuffle = torch.Generator()
    loader = train_loader(train_set, config.batch_size, config.workers, sampler, shuffle)
    steps_per_epoch = max(1, len(loader))
    total_steps = config.epochs * steps_per_epoch
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)

    start_epoch, step, best_ap, history = 0, 0, -1.0, []
    last_state = run_dir / "last"
    if resumed is not None:
        meta = load_training_state(last_state, model, optimizer)
        start_epoch, step, best_ap = meta["epoch"], meta["step"], meta["best_ap"]
        history = meta.get("history", [])
        if main:
            # The log is the state's history: an epoch logged after the last saved state
            # (a run killed between the two writes) is not counted twice.
            _write_metrics(run_dir, history)
            console.print(f"resuming {run_dir} after epoch {start_epoch} (step {step})")
            if meta.get("total_steps", total_steps) != total_steps:
                console.print(
                    f"note: the run now lasts {total_steps} steps, not "
                    f"{meta['total_steps']}; the learning-rate schedule follows the new length"
                )

    ddp_model = (
        torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[where.index] if where.type == "cuda" else None
        )
        if distributed
        else model
    )
    t0 = time.perf_counter()
    # An epoch's "seconds" is training time since the run began, across resumptions.
    earlier = history[-1]["seconds"] if history else 0.0
    log = PlainLog(console, main, total_steps, step, config.batch_size)
    progress = make_progress(console, main)
    with progress:
        task = progress.add_task(
            "train", total=total_steps, completed=step, loss=float("nan"), lr=0.0
        )
        for epoch in range(start_epoch, config.epochs):
            if step >= total_steps:
                break
            if hasattr(train_set, "set_epoch"):
                train_set.set_epoch(epoch)
            shuffle.manual_seed(config.seed * 100_003 + epoch)
            if sampler is not None:
                sampler.set_epoch(epoch)
            ddp_model.train()
            losses = []
            for batch in loader:
                batch = _dist.to_device(batch, where)
                factor = lr_factor(step, total_steps, config.warmup_steps, config.min_lr_ratio)
                for group in optimizer.param_groups:
                    group["lr"] = config.learning_rate * factor
                check_inputs(batch, f"epoch {epoch + 1}, step {step + 1}")
                output = ddp_model(batch["image"].contiguous(memory_format=memory_format))
                loss = (
                    loss_fn(output, batch)
                    if loss_fn is not None
                    else default_loss(output, batch["heatmaps"], batch["weights"])
                )
                check_finite(loss, f"epoch {epoch + 1}, step {step + 1}", batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
                step += 1
                progress.update(task, advance=1, loss=loss.item(), lr=config.learning_rate * factor)
                log.maybe(step, loss.item(), config.learning_rate * factor)
                if step >= total_steps:
                    break
            record: dict[str, Any] = {
                "epoch": epoch + 1,
                "step": step,
                "loss": _dist.all_reduce_mean(float(np.mean(losses)) if losses else float("nan")),
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": round(earlier + time.perf_counter() - t0, 1),
            }
            last_epoch = epoch + 1 == config.epochs or step >= total_steps
            if main and ((epoch + 1) % config.eval_every == 0 or last_epoch):
                model.eval()
                with torch.no_grad():
                    metrics = evaluate(lambda x: model(x.to(where)), val_set, batch_size=64)
                record.update(_summary(metrics))
                if metrics.ap > best_ap:
                    best_ap = metrics.ap
                    result.provenance = {
                        **bundle.provenance,
                        "trained": {**record, "config": config.model_dump()},
                    }
                    save_bundle(result, run_dir / "best")
                progress.console.print(
                    f"epoch {epoch + 1}: loss {record['loss']:.4f}  AP {metrics.ap:.4f}  "
                    f"PCK {metrics.pck:.4f}  best AP {best_ap:.4f}",
                    soft_wrap=True,
                )
            history.append(record)
            if main:
                with (run_dir / "metrics.jsonl").open("a") as handle:
                    handle.write(json.dumps(record) + "\n")
                meta = {
                    "epoch": epoch + 1,
                    "step": step,
                    "best_ap": best_ap,
                    "architecture": bundle.architecture,
                    "identity": identity,
                    "total_steps": total_steps,
                    "history": history,
                }
                save_training_state(last_state, model, optimizer, meta)
            _dist.barrier()

    # Every rank returns the best weights rank 0 kept.
    _dist.barrier()
    best = run_dir / "best.safetensors"
    if best.exists():
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(best)))
    model.to("cpu", memory_format=torch.contiguous_format)  # hand on a plain NCHW CPU model
    report = StageReport(
        stage="train",
        seconds=time.perf_counter() - t0,
        params_before=params_before,
        params_after=count_params(model),
        macs_before=macs_before,
        macs_after=count_macs(model, bundle.spec),
        metrics_before={},
        metrics_after={
            k: v
            for k, v in (history[-1] if history else {}).items()
            if k in ("ap", "ap50", "ar", "pck")
        },
        details={"best_ap": best_ap, "epochs": len(history), "steps": step},
    )
    return result, report


def _write_metrics(run_dir: Path, history: list[dict[str, Any]]) -> None:
    tmp = run_dir / "metrics.jsonl.tmp"
    tmp.write_text("".join(json.dumps(record) + "\n" for record in history))
    tmp.replace(run_dir / "metrics.jsonl")

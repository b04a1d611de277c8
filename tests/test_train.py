"""Training: a few real steps, resume, the recipe, and two-process DistributedDataParallel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from compress.data.coco import AugmentConfig, CocoPoseDataset
from compress.errors import DataError, ModelError, OutputError
from compress.models import Bundle, load_bundle
from compress.pose.spec import coco17
from compress.stages._loop import _batches, train_loader
from compress.stages.losses import softmax_cross_entropy
from compress.stages.state import read_training_meta
from compress.stages.train import TrainConfig, lr_factor, train

REPO = Path(__file__).resolve().parent.parent
SPEC = coco17(64, 64, heatmap_activation="softmax")


@pytest.fixture(scope="module")
def datasets(synthetic_root: Path):
    return (
        CocoPoseDataset.from_folder(synthetic_root, "train", SPEC, augment=AugmentConfig()),
        CocoPoseDataset.from_folder(synthetic_root, "val", SPEC),
    )


def test_lr_schedule_warms_up_then_decays() -> None:
    assert lr_factor(0, 100, 10, 0.0) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, 0.0) == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, 0.0) == pytest.approx(0.5)
    assert lr_factor(100, 100, 10, 0.01) == pytest.approx(0.01)


def test_training_steps_write_checkpoints_and_resume(tmp_path: Path, datasets) -> None:
    train_set, val_set = datasets
    bundle = Bundle.build("tests.user_models:tiny_pose", SPEC)
    bundle.provenance = {"note": "from the caller"}
    before = {k: v.clone() for k, v in bundle.model.state_dict().items()}
    steps_per_epoch = len(train_set) // 8
    config = TrainConfig(epochs=2, batch_size=8, workers=0, warmup_steps=1)
    result, report = train(bundle, config, train_set, val_set, tmp_path / "run")
    # The input bundle is untouched; the result moved.
    assert all(torch.equal(before[k], v) for k, v in bundle.model.state_dict().items())
    assert any(not torch.equal(before[k], v) for k, v in result.model.state_dict().items())
    assert {p.name for p in (tmp_path / "run").iterdir()} >= {
        "best.safetensors",
        "best.json",
        "last.safetensors",
        "last.json",
        "metrics.jsonl",
    }
    log = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["epoch"] for r in log] == [1, 2] and all("ap" in r and "loss" in r for r in log)
    assert report.details["steps"] == 2 * steps_per_epoch
    best = load_bundle(tmp_path / "run" / "best")
    assert best.provenance["trained"]["epoch"] in (1, 2)
    assert best.provenance["note"] == "from the caller"  # kept, not replaced

    # A run killed between logging epoch 2 and saving its state logged that epoch twice.
    with (tmp_path / "run" / "metrics.jsonl").open("a") as handle:
        handle.write(json.dumps({"epoch": 3, "loss": 1.0}) + "\n")
    longer = TrainConfig(epochs=3, batch_size=8, workers=0, warmup_steps=1)
    _, resumed = train(bundle, longer, train_set, val_set, tmp_path / "run")
    log = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["epoch"] for r in log] == [1, 2, 3]  # resumed after epoch 2, not from scratch
    assert resumed.details["steps"] == 3 * steps_per_epoch


def test_a_resumed_run_trains_exactly_like_an_uninterrupted_one(tmp_path: Path, datasets) -> None:
    """With augmentation and a worker process, as the shipped recipes train: each epoch draws
    its own augmentation in the worker, so a run stopped after epoch 2 and resumed ends with
    the uninterrupted run's weights (a persistent worker had drawn epoch 1's augmentation
    every epoch, and the resumed run another one)."""
    train_set, val_set = datasets
    bundle = Bundle.build("tests.user_models:tiny_pose", SPEC)
    config = TrainConfig(epochs=3, batch_size=4, workers=1, warmup_steps=1)
    steps_per_epoch = len(train_set) // 4
    train(bundle, config, train_set, val_set, tmp_path / "whole")

    calls = 0

    def stop_in_epoch_3(output, batch):
        nonlocal calls
        calls += 1
        if calls > 2 * steps_per_epoch:
            raise KeyboardInterrupt
        return softmax_cross_entropy(output, batch["heatmaps"], batch["weights"])

    with pytest.raises(KeyboardInterrupt):
        train(bundle, config, train_set, val_set, tmp_path / "resumed", loss_fn=stop_in_epoch_3)
    assert read_training_meta(tmp_path / "resumed" / "last")["epoch"] == 2
    train(bundle, config, train_set, val_set, tmp_path / "resumed")
    whole = load_file(str(tmp_path / "whole" / "last.safetensors"))
    resumed = load_file(str(tmp_path / "resumed" / "last.safetensors"))
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    # Epoch times count on from the interrupted run's, they do not restart at the resume.
    seconds = [r["seconds"] for r in read_training_meta(tmp_path / "resumed" / "last")["history"]]
    assert seconds == sorted(seconds)


def test_every_pass_of_a_worker_draws_that_epochs_augmentation(datasets) -> None:
    train_set, _ = datasets
    in_order = torch.utils.data.SequentialSampler(train_set)
    loader = train_loader(train_set, len(train_set), 1, in_order, torch.Generator())
    passes = _batches(loader, None, train_set)
    first, second = next(passes)["image"], next(passes)["image"]
    assert not torch.equal(first, second)  # the same people, other crops, flips and rotations
    train_set.set_epoch(0)


def test_resume_refuses_another_architecture(tmp_path: Path, datasets) -> None:
    train_set, val_set = datasets
    config = TrainConfig(epochs=1, batch_size=8, workers=0, max_steps=2)
    train(Bundle.build("tests.user_models:tiny_pose", SPEC), config, train_set, val_set, tmp_path)
    with pytest.raises(ModelError, match=r"resume state is for 'tests\.user_models:tiny_pose'"):
        train(Bundle.build("mobilepose", SPEC, width=0.25), config, train_set, val_set, tmp_path)


def test_a_run_folder_is_resumed_only_by_the_same_training(tmp_path: Path, datasets) -> None:
    train_set, val_set = datasets
    bundle = Bundle.build("tests.user_models:tiny_pose", SPEC)
    config = TrainConfig(epochs=1, batch_size=8, workers=0, max_steps=2)
    run = tmp_path / "run"
    train(bundle, config, train_set, val_set, run)
    other = config.model_copy(update={"learning_rate": 1e-4})
    with pytest.raises(
        OutputError, match=r"run/last\.json: the run in this folder trained another config;"
    ):
        train(bundle, other, train_set, val_set, run)
    with pytest.raises(OutputError, match=r"run: is not empty \(--no-resume\); pass --force"):
        train(bundle, config, train_set, val_set, run, resume=False)
    before = (run / "last.json").read_text()
    (run / "notes.txt").write_text("mine")
    with pytest.raises(
        OutputError, match=r"--force removes a training run's files only.*notes\.txt"
    ):
        train(bundle, other, train_set, val_set, run, force=True)
    assert (run / "last.json").read_text() == before  # nothing touched
    (run / "notes.txt").unlink()
    train(bundle, other, train_set, val_set, run, force=True)  # starts over
    meta = json.loads((run / "last.json").read_text())["meta"]
    assert meta["history"][0]["lr"] <= 1e-4
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1  # the new run's only
    state = json.loads((run / "last.json").read_text())
    del state["meta"]["identity"]  # as an earlier pocket wrote it
    (run / "last.json").write_text(json.dumps(state))
    with pytest.raises(OutputError, match=r"did not record what it trained"):
        train(bundle, other, train_set, val_set, run)
    (tmp_path / "stray").mkdir()
    (tmp_path / "stray" / "a.txt").write_text("x")
    with pytest.raises(OutputError, match=r"stray: has no resumable state \(last\.json\)"):
        train(bundle, config, train_set, val_set, tmp_path / "stray")


def test_nan_loss_stops_with_the_step_named(tmp_path: Path, datasets) -> None:
    train_set, val_set = datasets
    config = TrainConfig(epochs=1, batch_size=8, workers=0, max_steps=2)

    def nan_loss(output, batch):
        return output.sum() * float("nan")

    with pytest.raises(ModelError, match=r"training loss became nan at epoch 1, step 1"):
        train(
            Bundle.build("tests.user_models:tiny_pose", SPEC),
            config,
            train_set,
            val_set,
            tmp_path,
            loss_fn=nan_loss,
        )


def test_nan_input_images_stop_with_the_step_and_images_named(
    tmp_path: Path, datasets, poisoned
) -> None:
    train_set, val_set = datasets
    config = TrainConfig(epochs=1, batch_size=len(train_set), workers=0, max_steps=1)
    bad_id = int(train_set[3]["image_id"])
    with pytest.raises(
        DataError,
        match=rf"input images hold NaN or Inf values at epoch 1, step 1 \(images \[{bad_id}\]\)",
    ):
        train(
            Bundle.build("tests.user_models:tiny_pose", SPEC),
            config,
            poisoned(train_set, 3),
            val_set,
            tmp_path / "run",
        )
    assert not (tmp_path / "run" / "best").exists()


def run_ddp_worker(data_root: Path, out: Path, mode: str) -> list[dict[str, torch.Tensor]]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(REPO / "tests" / "ddp_worker.py"),
        str(data_root),
        str(out),
        mode,
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [load_file(str(out / f"rank{r}.safetensors")) for r in (0, 1)]


def assert_identical(rank0: dict, rank1: dict) -> None:
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key


def test_two_process_ddp_ends_with_identical_weights(tmp_path: Path, synthetic_root: Path) -> None:
    rank0, rank1 = run_ddp_worker(synthetic_root, tmp_path, "train")
    assert_identical(rank0, rank1)
    # Only rank 0 wrote the run folder.
    assert (tmp_path / "run" / "best.json").exists()


def test_two_process_distillation_ends_with_identical_weights(
    tmp_path: Path, synthetic_root: Path
) -> None:
    rank0, rank1 = run_ddp_worker(synthetic_root, tmp_path, "distill")
    assert_identical(rank0, rank1)
    torch.manual_seed(0)
    start = Bundle.build("tests.user_models:tiny_pose", SPEC).model.state_dict()
    assert any(not torch.equal(start[k], rank0[k]) for k in start)  # it did train


def test_softmax_cross_entropy_prefers_the_right_peak() -> None:
    from compress.stages.losses import softmax_cross_entropy

    target = torch.zeros(1, 2, 8, 8)
    target[0, 0, 2, 3] = target[0, 1, 5, 5] = 1.0
    right = target * 10
    wrong = torch.roll(target, 2, dims=-1) * 10
    assert softmax_cross_entropy(right, target) < softmax_cross_entropy(wrong, target)
    weights = torch.tensor([[1.0, 0.0]])  # the second joint is unlabelled: its error is ignored
    mixed = torch.cat([right[:, :1], wrong[:, 1:]], dim=1)
    assert softmax_cross_entropy(mixed, target, weights) == pytest.approx(
        softmax_cross_entropy(right[:, :1], target[:, :1]).item()
    )


def test_loss_and_spec_activation_must_agree(tmp_path: Path, datasets) -> None:
    from compress.errors import RecipeError

    train_set, val_set = datasets
    bundle = Bundle.build("tests.user_models:tiny_pose", SPEC)
    with pytest.raises(
        RecipeError, match=r"train\.loss 'mse' trains outputs for heatmap_activation 'none'"
    ):
        train(bundle, TrainConfig(loss="mse", max_steps=1), train_set, val_set, tmp_path)

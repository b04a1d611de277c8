"""Run by test_train.py under torchrun: a few distributed training steps, then each rank writes
its final weights so the test can compare them."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from compress import _dist
from compress.data.coco import AugmentConfig, CocoPoseDataset
from compress.models import Bundle
from compress.pose.spec import coco17
from compress.stages.train import TrainConfig, train


def main() -> None:
    data_root, out = Path(sys.argv[1]), Path(sys.argv[2])
    torch.set_num_threads(1)
    spec = coco17(64, 64, heatmap_activation="softmax")
    train_set = CocoPoseDataset.from_folder(data_root, "train", spec, augment=AugmentConfig())
    val_set = CocoPoseDataset.from_folder(data_root, "val", spec)
    bundle = Bundle.build("tests.user_models:tiny_pose", spec)
    config = TrainConfig(epochs=1, batch_size=4, workers=0, max_steps=3, warmup_steps=1)
    result, _ = train(bundle, config, train_set, val_set, out / "run")
    state = {k: v.contiguous() for k, v in result.model.state_dict().items()}
    save_file(state, str(out / f"rank{_dist.rank()}.safetensors"))
    _dist.shutdown()


if __name__ == "__main__":
    main()

"""Run by the tests under torchrun: a few distributed training (or distillation) steps, then
each rank writes its final weights so the test can compare them.

Usage: ddp_worker.py DATA_ROOT OUT [train|distill]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from compress import _dist
from compress.data.coco import AugmentConfig, CocoPoseDataset
from compress.models import Bundle
from compress.pose.spec import coco17
from compress.stages.configs import DistillConfig
from compress.stages.distill import distill_model
from compress.stages.train import TrainConfig, train


def main() -> None:
    data_root, out = Path(sys.argv[1]), Path(sys.argv[2])
    torch.set_num_threads(1)
    spec = coco17(64, 64, heatmap_activation="softmax")
    train_set = CocoPoseDataset.from_folder(data_root, "train", spec, augment=AugmentConfig())
    val_set = CocoPoseDataset.from_folder(data_root, "val", spec)
    mode = sys.argv[3] if len(sys.argv) > 3 else "train"
    torch.manual_seed(0)
    bundle = Bundle.build("tests.user_models:tiny_pose", spec)
    if mode == "distill":
        teacher = Bundle.build("tests.user_models:tiny_pose", spec, channels=16).model
        config = DistillConfig(
            steps=3,
            batch_size=4,
            workers=0,
            warmup_steps=1,
            features=[{"student": "body.3", "teacher": "body.3"}],
        )
        distill_model(bundle.model, teacher, spec, train_set, config)
        model = bundle.model
    else:
        config = TrainConfig(epochs=1, batch_size=4, workers=0, max_steps=3, warmup_steps=1)
        model = train(bundle, config, train_set, val_set, out / "run")[0].model
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / f"rank{_dist.rank()}.safetensors"))
    _dist.shutdown()


if __name__ == "__main__":
    main()

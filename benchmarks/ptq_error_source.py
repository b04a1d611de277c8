"""Where plain PTQ's AP drop comes from: weights, activations, or the heatmap output.

Quantizes one float network (default: a `pocket run` folder's pruned `float` checkpoint) the
way the quantize stage does (litert-torch's PT2E quantizer: per-channel symmetric int8 weights,
per-tensor int8 activations, histogram observer, 256 calibration images), but with parts of
the quantization switched off:

- histogram output: plain PTQ with the histogram observer on every activation, the output
  included (what the stage did before it calibrated outputs with min-max);
- weights only: int8 weights, float activations;
- activations only: float weights, int8 activations (histogram output);
- output float: plain PTQ except the output layer (weights and heatmaps), which stays float;
- the stage: plain PTQ as the quantize stage does it, outputs calibrated with min-max.

Each is calibrated with three seeds (each seed picks other images) and scored on the recipe's
whole val split, as `ptq_spread.py` does.

Run: POCKET_CACHE=.cache .venv/bin/python benchmarks/ptq_error_source.py [RUN/float]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from pathlib import Path

import torch

from compress.models.bundle import load_bundle
from compress.pipeline import load_datasets
from compress.pose.metrics import evaluate
from compress.recipe import Recipe, load_recipe
from compress.stages.base import measure
from compress.stages.quantize import (
    base_quantizer,
    calibration_batches,
    export_for_quantization,
    list_units,
    ptq,
)

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "network", type=Path, nargs="?", default=REPO / "exported/pose-mobile/float"
    )
    parser.add_argument("--recipe", type=Path, default=REPO / "recipes" / "pose-mobile.yaml")
    parser.add_argument("--output-layer", default="head.final", help="the layer giving heatmaps")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    args = parser.parse_args()
    torch.set_num_threads(1)
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer

    recipe = load_recipe(args.recipe, Recipe)
    network = load_bundle(args.network)
    train_set, val_set = load_datasets(
        recipe, args.recipe.resolve().parent, network.spec, recipe.seed
    )
    float_ap = measure(network, val_set).ap
    print(f"{args.network}: float AP {float_ap:.4f} on {len(val_set)} people", flush=True)
    exported = export_for_quantization(network.model, network.spec)
    quantizer = base_quantizer("histogram", per_channel=True, qat=False)
    if args.output_layer not in list_units(exported, quantizer):
        parser.error(f"--output-layer {args.output_layer!r} is not a quantized layer")
    config = quantizer.global_config
    no_acts = dataclasses.replace(config, input_activation=None, output_activation=None)

    def plain(quant_config):  # litert-torch's own quantizer: no rule for the output
        return PT2EQuantizer().set_global(quant_config)

    modes = {
        "histogram output": (plain(config), lambda _unit: True),
        "weights only": (plain(no_acts), lambda _unit: True),
        "activations only": (plain(dataclasses.replace(config, weight=None)), lambda _unit: True),
        "output float": (plain(config), lambda unit: unit.name != args.output_layer),
        "the stage": (quantizer, lambda _unit: True),
    }
    for mode, (mode_quantizer, keep) in modes.items():
        drops = []
        for seed in args.seeds:
            batches = calibration_batches(train_set, 256, seed)
            model = ptq(exported, mode_quantizer, batches, keep)
            with torch.no_grad():
                drops.append(100 * (float_ap - evaluate(model, val_set).ap))
        print(
            f"{mode:20} AP drop mean {statistics.mean(drops):+.2f}  "
            f"({'  '.join(f'{d:+.2f}' for d in drops)} for seeds {args.seeds})",
            flush=True,
        )


if __name__ == "__main__":
    main()

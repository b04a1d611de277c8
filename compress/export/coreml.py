"""Core ML (ML Program) through coremltools.

``fp16``: fp16 weights and compute. ``int8_weights``: int8 per-channel linear weights.
``w8a8``: the quantize stage's PT2E network (int8 weights and activations; iOS 17+).
``palette8``/``palette6``/``palette4``: k-means palettized weights (4-bit uses per-group
tables, iOS 18+). With ``coreml_image_input`` the input is an image (pixel buffer) and the
PoseSpec's normalisation runs inside the model, exactly.

Core ML cannot run on Linux; the saved package is reloaded and its ML program parsed, which
checks the spec and lists the operations.
"""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import ClassVar

import torch

from compress.errors import RecipeError
from compress.export import register_exporter
from compress.export.base import Artifact, ExportContext, Exporter, file_digest
from compress.export.metadata import METADATA_KEY, encode, for_artifact
from compress.export.support import conversion_failed

INPUT, OUTPUT = "image", "heatmaps"
TARGETS = ("iOS16", "iOS17", "iOS18")


class _Normalized(torch.nn.Module):
    """Pixels 0..255 in, the network's normalised input inside: (x - mean) / std."""

    def __init__(self, model: torch.nn.Module, mean, std) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)


@register_exporter
class CoremlExporter(Exporter):
    name = "coreml"
    variants: ClassVar[dict[str, str]] = {
        "fp16": "fp16 weights and compute",
        "int8_weights": "int8 per-channel weights (linear), fp16 compute",
        "w8a8": "int8 weights and activations from the quantize stage (iOS 17+)",
        "palette8": "8-bit k-means palettized weights",
        "palette6": "6-bit k-means palettized weights",
        "palette4": "4-bit k-means palettized weights, per-group tables (iOS 18+)",
    }
    needs_quantized: ClassVar[frozenset[str]] = frozenset({"w8a8"})

    def export(self, context: ExportContext, variant: str, folder: Path) -> Artifact:
        import coremltools as ct

        options = context.options
        if options.coreml_target not in TARGETS:
            raise RecipeError(
                f"coreml deployment target {options.coreml_target!r}: one of {', '.join(TARGETS)}"
            )
        target = getattr(ct.target, options.coreml_target)
        if variant == "w8a8" and TARGETS.index(options.coreml_target) < 1:
            raise RecipeError("coreml:w8a8 needs deployment target iOS17 or later")
        if variant == "palette4" and TARGETS.index(options.coreml_target) < 2:
            raise RecipeError("coreml:palette4 needs deployment target iOS18 (per-group tables)")
        spec = context.bundle.spec
        if options.coreml_image_input:
            color = (
                ct.colorlayout.RGB
                if spec.normalization.color_order == "RGB"
                else ct.colorlayout.BGR
            )
            inputs = [
                ct.ImageType(
                    name=INPUT,
                    shape=tuple(context.example.shape),
                    scale=1.0,
                    bias=[0.0, 0.0, 0.0],
                    color_layout=color,
                )
            ]
        else:
            inputs = [ct.TensorType(name=INPUT, shape=tuple(context.example.shape))]

        def convert():
            return ct.convert(
                _program(context, variant),
                convert_to="mlprogram",
                minimum_deployment_target=target,
                inputs=inputs,
                outputs=[ct.TensorType(name=OUTPUT)],
                compute_precision=ct.precision.FLOAT16,
                skip_model_load=True,
            )

        try:
            if variant == "w8a8":
                model = convert()
            else:  # fp16 and the weight compressions start from one conversion
                key = ("coreml:fp16", options.coreml_image_input, options.coreml_target)
                base = context.memo(key, convert)
                model = ct.models.MLModel(
                    base.get_spec(), weights_dir=base.weights_dir, skip_model_load=True
                )
            model = _compress(model, variant)
        except RecipeError:
            raise
        except Exception as exc:  # coremltools raises many types; name the failure
            raise conversion_failed("coreml", variant, context.operations(), exc) from exc
        # Compressed programs may take fp16 arrays: say what the file really takes.
        in_dtype = _input_dtype(model, options.coreml_image_input)
        meta = for_artifact(
            context.metadata,
            variant=f"coreml:{variant}",
            input={
                "name": INPUT,
                "dtype": in_dtype,
                "kind": "image" if options.coreml_image_input else "tensor",
                "pixels": "0..255, normalised inside the model"
                if options.coreml_image_input
                else "normalised as input.normalization says",
            },
            output={"name": OUTPUT},
        )
        h, w = spec.input_size
        model.user_defined_metadata[METADATA_KEY] = encode(meta)
        model.author = "pocket"
        model.short_description = (
            f"{meta['model']['name']}: 2D pose, {spec.num_keypoints} keypoints, {variant}"
        )
        model.version = str(meta["model"]["version"])
        model.input_description[INPUT] = f"person crop {h}x{w} {spec.normalization.color_order}" + (
            ", pixels 0..255" if options.coreml_image_input else ", normalised (x - mean) / std"
        )
        model.output_description[OUTPUT] = (
            f"{spec.num_keypoints} heatmaps at stride {spec.heatmap_stride}, "
            f"activation {spec.heatmap_activation}, keypoints in metadata order"
        )
        path = folder / f"{meta['model']['name']}-{variant}.mlpackage"
        model.save(str(path))
        make_reproducible(path)
        operations = program_operations(path)
        size, sha = file_digest(path)
        return Artifact(
            path,
            self.name,
            variant,
            size,
            sha,
            inputs=[
                {
                    "name": INPUT,
                    "shape": list(context.example.shape),
                    "dtype": in_dtype,
                    "layout": "NCHW",
                }
            ],
            outputs=[
                {
                    "name": OUTPUT,
                    "shape": meta["output"]["shape"],
                    "dtype": "float32",
                    "layout": "NCHW",
                }
            ],
            notes=[f"operations: {', '.join(sorted(set(operations)))}"],
        )


def _input_dtype(model, image_input: bool) -> str:
    if image_input:
        return "image"
    from coremltools.proto import FeatureTypes_pb2

    array = model.get_spec().description.input[0].type.multiArrayType
    return "float16" if array.dataType == FeatureTypes_pb2.ArrayFeatureType.FLOAT16 else "float32"


def _program(context: ExportContext, variant: str):
    """The torch.export program coremltools converts (inference dialect)."""
    if variant == "w8a8":
        if context.quantized is None or context.quantized.quantization is None:
            raise RecipeError("coreml:w8a8 needs a quantize stage before export")
        # coremltools reads int8 weights only when their quantize ops are folded into
        # constants (what convert_pt2e(fold_quantize=True) does; torchao keeps it private).
        from torchao.quantization.pt2e.constant_fold import constant_fold
        from torchao.quantization.pt2e.quantize_pt2e import _quant_node_constraint

        module = copy.deepcopy(context.quantized.model)
        constant_fold(module, _quant_node_constraint)
    else:
        module = copy.deepcopy(context.bundle.model).eval()
    if context.options.coreml_image_input:
        norm = context.bundle.spec.normalization
        module = _Normalized(module, norm.mean, norm.std)
    exported = torch.export.export(module, (context.example,), strict=False)
    return exported.run_decompositions({})


def _compress(model, variant: str):
    import coremltools.optimize.coreml as cto

    if variant == "int8_weights":
        config = cto.OpLinearQuantizerConfig(
            mode="linear_symmetric", dtype="int8", granularity="per_channel"
        )
        return cto.linear_quantize_weights(model, cto.OptimizationConfig(global_config=config))
    if variant.startswith("palette"):
        bits = int(variant.removeprefix("palette"))
        if bits == 4:
            config = cto.OpPalettizerConfig(
                mode="kmeans", nbits=4, granularity="per_grouped_channel", group_size=16
            )
        else:
            config = cto.OpPalettizerConfig(mode="kmeans", nbits=bits, granularity="per_tensor")
        return cto.palettize_weights(model, cto.OptimizationConfig(global_config=config))
    return model


def make_reproducible(path: Path) -> None:
    """Make a saved .mlpackage byte-identical across runs of the same export.

    coremltools stamps the conversion date into the metadata, writes the spec's maps in hash
    order and names the package's items with random UUIDs. pocket drops the date (its own
    metadata records what produced the file), serialises the spec deterministically and
    derives each item's UUID from its path.
    """
    from coremltools.proto import Model_pb2

    manifest_path = path / "Manifest.json"
    manifest = json.loads(manifest_path.read_text())
    entries, renamed = {}, {}
    for old, item in manifest["itemInfoEntries"].items():
        new = str(uuid.uuid5(uuid.NAMESPACE_URL, f"pocket:{item['path']}")).upper()
        entries[new], renamed[old] = item, new
    manifest["itemInfoEntries"] = entries
    manifest["rootModelIdentifier"] = renamed[manifest["rootModelIdentifier"]]
    manifest_path.write_text(json.dumps(manifest, indent=4, sort_keys=True) + "\n")

    spec_path = path / "Data" / "com.apple.CoreML" / "model.mlmodel"
    spec = Model_pb2.Model()
    spec.ParseFromString(spec_path.read_bytes())
    spec.description.metadata.userDefined.pop("com.github.apple.coremltools.conversion_date", None)
    spec_path.write_bytes(spec.SerializeToString(deterministic=True))


def program_operations(path: Path) -> list[str]:
    """Reload a saved .mlpackage and parse its ML program (what Linux can check)."""
    from compress.runtimes.mil import load_program

    _, function = load_program(path)
    return [op.op_type for op in function.operations]


def read_metadata(path: Path) -> dict[str, str]:
    import coremltools as ct

    spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    return dict(spec.description.metadata.userDefined)

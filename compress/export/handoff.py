"""The hand-off an app team reads: android/README.md, ios/README.md and pose_spec.json.

Each README gives the input spec, preprocessing, output layout and decoding, the keypoint
table and skeleton, the files with their sizes, the measured accuracy and latency (when a
verification has run; otherwise it says they were not measured), and a short snippet that
feeds an image and decodes keypoints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compress.export.base import Artifact
from compress.pose.spec import PoseSpec


def write_handoff(
    folder: Path,
    spec: PoseSpec,
    name: str,
    artifacts: list[Artifact],
    measured: dict[str, dict[str, Any]] | None = None,
) -> list[Path]:
    """Write the hand-off files into ``folder``; ``measured`` maps "format:variant" to
    numbers from verification (ap, ap_drop, latency_ms...)."""
    (folder / "pose_spec.json").write_text(spec.to_json() + "\n")
    written = [folder / "pose_spec.json"]
    for platform, formats in (("android", ("tflite",)), ("ios", ("coreml",))):
        mine = [a for a in artifacts if a.format in formats]
        if not mine:
            continue
        (folder / platform).mkdir(exist_ok=True)
        path = folder / platform / "README.md"
        path.write_text(_readme(platform, spec, name, mine, folder, measured or {}))
        written.append(path)
    return written


def _readme(
    platform: str,
    spec: PoseSpec,
    name: str,
    artifacts: list[Artifact],
    root: Path,
    measured: dict[str, dict[str, Any]],
) -> str:
    h, w = spec.input_size
    stride = spec.heatmap_stride
    norm = spec.normalization
    lines = [
        f"# {name} for {'Android (LiteRT)' if platform == 'android' else 'iOS (Core ML)'}",
        "",
        f"2D human pose, {spec.num_keypoints} keypoints, top-down: run a person detector, crop "
        f"each person box (expanded to the {h}:{w} aspect ratio and padded 1.25x), resize to "
        f"{w}x{h} (width x height), and run the model on the crop.",
        "",
        "## Files",
        "",
        "| file | variant | input | output | size | accuracy (OKS-AP, drop) | latency |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for a in artifacts:
        m = measured.get(str(a.target), {})
        accuracy = (
            f"{m['ap']:.3f} ({m['ap_drop']:+.2f} points)" if "ap" in m else "not measured yet"
        )
        latency = f"{m['latency_ms']:.1f} ms" if "latency_ms" in m else "not measured yet"
        inp, out = a.inputs[0], a.outputs[0]
        lines.append(
            f"| `{a.path.relative_to(root)}` | {a.variant} | {inp['dtype']} {inp['shape']} "
            f"{inp['layout']} | {out['dtype']} {out['shape']} {out['layout']} | "
            f"{a.bytes / 1e6:.2f} MB | {accuracy} | {latency} |"
        )
    lines += [
        "",
        "## Input",
        "",
        f"- {norm.color_order} pixels 0..255, normalised per channel: x = (pixel - mean) / std, "
        f"mean {list(norm.mean)}, std {list(norm.std)}"
        + (" (Core ML image inputs do this inside the model)" if platform == "ios" else ""),
        "- NHWC files take [1, height, width, 3]; NCHW files take [1, 3, height, width].",
        "- int8-input files take int8 values: q = round(x / scale) + zero_point, with the "
        "scale and zero point listed in the file's input details.",
        "",
        "## Output and decoding",
        "",
        f"{spec.num_keypoints} heatmaps of {h // stride}x{w // stride} (stride {stride}), one per "
        f"keypoint in the order below; activation: {spec.heatmap_activation}.",
        "",
        "1. For each keypoint map"
        + (
            ", take the spatial softmax (exp, divide by the sum)"
            if str(spec.heatmap_activation) == "softmax"
            else ""
        )
        + ", then the arg-max cell (col, row).",
        "2. Refine to sub-pixel: move a quarter cell toward the higher neighbour in x and in y "
        f"(pocket itself uses DARK; decoder: {spec.decoder}).",
        f"3. Crop pixels: x = (col + 0.5) * {stride}, y = (row + 0.5) * {stride}.",
        "4. Back to the camera image through the inverse of the crop transform.",
        "5. Confidence: the map's value at the peak; hide joints below about 0.2.",
        "",
        "## Keypoints",
        "",
        "| index | name | flips to |",
        "| --- | --- | --- |",
    ]
    flips = {a: b for a, b in spec.flip_pairs} | {b: a for a, b in spec.flip_pairs}
    for i, k in enumerate(spec.keypoints):
        lines.append(f"| {i} | {k} | {flips.get(k, '-')} |")
    lines += ["", "Skeleton (lines to draw): " + ", ".join(f"{a}-{b}" for a, b in spec.skeleton)]
    lines += ["", "## Code", ""]
    if platform == "android":  # one snippet per distinct input/output signature
        shown: dict[tuple, Artifact] = {}
        for a in artifacts:
            shown.setdefault(_signature(a), a)
        lines += [_kotlin(spec, a) + "\n" for a in shown.values()]
    else:
        lines += [_swift(spec, artifacts[0]), ""]
    return "\n".join(lines)


def _signature(a: Artifact) -> tuple:
    return tuple((d["dtype"], d["layout"]) for d in (a.inputs[0], a.outputs[0]))


def _swift(spec: PoseSpec, artifact: Artifact) -> str:
    h, w = spec.input_size
    k, stride = spec.num_keypoints, spec.heatmap_stride
    hh, ww = h // stride, w // stride
    return f"""```swift
// Core ML; `crop` is a {w}x{h} person crop as a CVPixelBuffer (image-input files)
let model = try MLModel(contentsOf: compiledURL)  // {artifact.path.name}, compiled by Xcode
let input = try MLDictionaryFeatureProvider(
    dictionary: ["image": MLFeatureValue(pixelBuffer: crop)])
let heatmaps = try model.prediction(from: input).featureValue(for: "heatmaps")!.multiArrayValue!
var keypoints: [CGPoint] = []
for j in 0..<{k} {{
    var best = 0; var bestValue = -Float.infinity
    for i in 0..<({hh} * {ww}) {{
        let v = heatmaps[j * {hh} * {ww} + i].floatValue
        if v > bestValue {{ bestValue = v; best = i }}
    }}
    let row = best / {ww}, col = best % {ww}
    keypoints.append(CGPoint(x: (Double(col) + 0.5) * {stride}, y: (Double(row) + 0.5) * {stride}))
}}
```"""


def _kotlin(spec: PoseSpec, artifact: Artifact) -> str:
    """Feed a normalised crop and decode the arg-max of each map, in ``artifact``'s own
    layout and input/output types (an int8 file is quantized and dequantized by hand)."""
    h, w = spec.input_size
    k, stride = spec.num_keypoints, spec.heatmap_stride
    hh, ww = h // stride, w // stride
    inp, out = artifact.inputs[0], artifact.outputs[0]
    int8_in, int8_out = inp["dtype"] == "int8", out["dtype"] == "int8"
    nhwc_in, nhwc_out = inp["layout"] == "NHWC", out["layout"] == "NHWC"
    index = f"(r * {ww} + c) * {k} + j" if nhwc_out else f"(j * {hh} + r) * {ww} + c"
    lines = [
        "```kotlin",
        f"// LiteRT Interpreter (com.google.ai.edge.litert) running {artifact.path.name}.",
        f"// `crop`: a {w}x{h} person crop, normalised as above, as a FloatArray in "
        f"{'HWC' if nhwc_in else 'CHW'} order ({3 * h * w} values).",
        f'val interpreter = Interpreter(loadModelFile(context, "{artifact.path.name}"))',
    ]
    if int8_in:
        lines += [
            "val inQ = interpreter.getInputTensor(0).quantizationParams()",
            f"val input = ByteBuffer.allocateDirect({3 * h * w}).order(ByteOrder.nativeOrder())",
            "for (x in crop) input.put(((x / inQ.scale).roundToInt() + inQ.zeroPoint)"
            ".coerceIn(-128, 127).toByte())",
        ]
    else:
        lines += [
            f"val input = ByteBuffer.allocateDirect(4 * {3 * h * w})"
            ".order(ByteOrder.nativeOrder())",
            "for (x in crop) input.putFloat(x)",
        ]
    size = k * hh * ww if int8_out else 4 * k * hh * ww
    lines += [
        f"val output = ByteBuffer.allocateDirect({size}).order(ByteOrder.nativeOrder())",
        "input.rewind()",
        "interpreter.run(input, output)",
    ]
    if int8_out:
        lines += [
            "val outQ = interpreter.getOutputTensor(0).quantizationParams()",
            "fun heat(i: Int) = (output.get(i) - outQ.zeroPoint) * outQ.scale",
        ]
    else:
        lines.append("fun heat(i: Int) = output.getFloat(4 * i)")
    lines += [
        f"// heatmaps: {out['layout']} [{', '.join(str(d) for d in out['shape'])}]",
        f"val keypoints = (0 until {k}).map {{ j ->",
        "    var bestRow = 0; var bestCol = 0; var bestValue = Float.NEGATIVE_INFINITY",
        f"    for (r in 0 until {hh}) for (c in 0 until {ww}) {{",
        f"        val v = heat({index})",
        "        if (v > bestValue) { bestValue = v; bestRow = r; bestCol = c }",
        "    }",
        f"    PointF((bestCol + 0.5f) * {stride}, (bestRow + 0.5f) * {stride})"
        "  // crop pixels; map back to the image",
        "}",
        "```",
    ]
    return "\n".join(lines)

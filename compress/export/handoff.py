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
    lines += ["", "## Code", "", _snippet(platform, spec, artifacts[0]), ""]
    return "\n".join(lines)


def _snippet(platform: str, spec: PoseSpec, artifact: Artifact) -> str:
    h, w = spec.input_size
    k, stride = spec.num_keypoints, spec.heatmap_stride
    hh, ww = h // stride, w // stride
    if platform == "android":
        return f"""```kotlin
// LiteRT Interpreter (com.google.ai.edge.litert); crop: a {w}x{h} person crop, already
// normalised into `input` ({artifact.inputs[0]["layout"]}, float32).
val interpreter = Interpreter(loadModelFile(context, "{artifact.path.name}"))
val output = Array(1) {{ Array({k}) {{ Array({hh}) {{ FloatArray({ww}) }} }} }}
interpreter.run(input, output)
val keypoints = (0 until {k}).map {{ j ->
    var best = 0; var bestValue = Float.NEGATIVE_INFINITY
    for (r in 0 until {hh}) for (c in 0 until {ww}) {{
        val v = output[0][j][r][c]; if (v > bestValue) {{ bestValue = v; best = r * {ww} + c }}
    }}
    val row = best / {ww}; val col = best % {ww}
    PointF((col + 0.5f) * {stride}, (row + 0.5f) * {stride})  // crop pixels; map back to the image
}}
```"""
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

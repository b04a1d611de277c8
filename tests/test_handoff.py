"""The hand-off READMEs: the Kotlin snippet follows each file's own layout and input/output
types, so an app team copying it reads the heatmaps in the right order."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from compress.export.base import Artifact
from compress.export.handoff import write_handoff
from compress.pose.spec import coco17

SPEC = coco17(64, 48)  # heatmaps 16 x 12


def artifact(folder: Path, name: str, layout: str, dtype: str) -> Artifact:
    nhwc = layout == "NHWC"
    quant = {"quantization": {"scale": 0.02, "zero_point": -3}} if dtype == "int8" else {}
    shape_in = [1, 64, 48, 3] if nhwc else [1, 3, 64, 48]
    shape_out = [1, 16, 12, 17] if nhwc else [1, 17, 16, 12]
    (folder / name).write_bytes(b"x")
    return Artifact(
        folder / name, "tflite", name.split(".")[0], 1, "0" * 64,
        inputs=[{"name": "x", "shape": shape_in, "dtype": dtype, "layout": layout, **quant}],
        outputs=[{"name": "y", "shape": shape_out, "dtype": dtype, "layout": layout, **quant}],
    )  # fmt: skip


def snippets(text: str) -> list[str]:
    return re.findall(r"```kotlin\n(.*?)```", text, re.S)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_kotlin_snippet_reads_the_heatmaps_in_the_files_order(tmp_path: Path, layout) -> None:
    files = [artifact(tmp_path, "fp32.tflite", layout, "float32")]
    files.append(artifact(tmp_path, "int8.tflite", layout, "int8"))
    files.append(artifact(tmp_path, "fp16.tflite", layout, "float32"))  # same as fp32
    write_handoff(tmp_path, SPEC, "tiny", files)
    code = snippets((tmp_path / "android" / "README.md").read_text())
    assert len(code) == 2  # one per input/output signature
    fp32, int8 = code
    assert "fp32.tflite" in fp32 and "putFloat" in fp32 and "getFloat(4 * i)" in fp32
    assert "int8.tflite" in int8 and "inQ.scale" in int8 and "outQ.zeroPoint" in int8
    assert "HWC order" in fp32 if layout == "NHWC" else "CHW order" in fp32
    # The index the snippet computes is where numpy's row-major order puts (joint, row, col).
    index = re.search(r"val v = heat\((.*)\)", fp32).group(1)
    shape = files[0].outputs[0]["shape"][1:]
    for j, r, c in [(0, 0, 1), (5, 3, 7), (16, 15, 11)]:
        where = (r, c, j) if layout == "NHWC" else (j, r, c)
        expected = int(np.ravel_multi_index(where, shape))
        assert eval(index, {}, {"j": j, "r": r, "c": c}) == expected
    size = int(re.search(r"output = ByteBuffer.allocateDirect\((\d+)\)", int8).group(1))
    assert size == 17 * 16 * 12  # one byte per int8 value

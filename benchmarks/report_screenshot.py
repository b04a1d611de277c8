"""Render a run's report.html in headless Chromium and check the screenshot shows the page.

The page is self-contained (plots embedded as PNG), so it is opened from the file with the
network off. The check is on pixels, not on the DOM: the summary table's text must appear at
the top, and the plots (coloured marks on white) must take up a real share of the page.

Needs Chromium (Debian: `apt-get install chromium`); it is not a Python dependency.

Run: .venv/bin/python benchmarks/report_screenshot.py exported/pose-mobile
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--hide-scrollbars",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def screenshot(page: Path, out: Path, width: int, height: int) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        sys.exit("error: Chromium is not installed (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [browser, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
             f"--screenshot={out}", page.resolve().as_uri()],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip


def describe(image: np.ndarray) -> dict[str, float]:
    """Shares of the page: dark (text, table borders) in the top 400 px and coloured (plot
    marks: saturated pixels) overall."""
    rgb = image[..., :3].astype(np.int16)
    dark = (rgb.max(axis=-1) < 100)[:400].mean()
    saturation = rgb.max(axis=-1) - rgb.min(axis=-1)
    return {"text_top": float(dark), "coloured": float((saturation > 60).mean())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run", type=Path, help="a run folder with report.html")
    parser.add_argument("--out", type=Path, help="screenshot file (default RUN/report.png)")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=4000)
    args = parser.parse_args()
    page = args.run / "report.html"
    if not page.is_file():
        sys.exit(f"error: {page} does not exist; run a recipe with export and checks first")
    out = args.out or args.run / "report.png"
    screenshot(page, out, args.width, args.height)
    shares = describe(np.asarray(Image.open(out).convert("RGB")))
    ok = shares["text_top"] > 0.005 and shares["coloured"] > 0.01
    print(f"{out}: {args.width}x{args.height}, dark pixels in the top 400 px "
          f"{shares['text_top']:.1%}, coloured pixels {shares['coloured']:.1%}: "
          f"{'PASS' if ok else 'FAIL'} (needs > 0.5% and > 1%)")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

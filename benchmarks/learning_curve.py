"""Print a training run's learning curve (epoch, step, minutes, loss, AP, AP50, PCK) from its
metrics.jsonl, as the README shows it.

Run: .venv/bin/python benchmarks/learning_curve.py exported/student exported/teacher
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    for run in args.runs:
        print(run)
        for line in (run / "metrics.jsonl").read_text().splitlines():
            r = json.loads(line)
            print(
                f"epoch {r['epoch']:2d}  step {r['step']:6d}  {r['seconds'] / 60:6.1f} min  "
                f"loss {r['loss']:.3f}  AP {r.get('ap', float('nan')):.3f}  "
                f"AP50 {r.get('ap50', float('nan')):.3f}  PCK {r.get('pck', float('nan')):.3f}"
            )


if __name__ == "__main__":
    main()

"""Head with and without skip connections from the backbone's stride-16/8/4 features.

Both variants train the same student for --steps (see _short_run.py), each in its own process
with one thread, side by side so they share the machine's noise.

Run: POCKET_CACHE=.cache .venv/bin/python benchmarks/skip_choice.py --steps 500
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def child(skips: bool, steps: int, lr: float) -> None:
    import torch

    sys.path.insert(0, str(HERE))
    from _short_run import short_run

    from compress.pose.spec import coco17

    torch.set_num_threads(1)
    spec = coco17(160, 128, heatmap_activation="softmax")
    m, seconds = short_run(spec, "mobilepose", {"skips": skips}, steps, lr)
    print(json.dumps({"ap": m.ap, "ap50": m.ap50, "pck": m.pck, "seconds": seconds}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--child", choices=["skips", "plain"])
    args = parser.parse_args()
    if args.child:
        child(args.child == "skips", args.steps, args.lr)
        return
    procs = {
        name: subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--child",
                name,
                "--steps",
                str(args.steps),
                "--lr",
                str(args.lr),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in ("plain", "skips")
    }
    for name, proc in procs.items():
        out, _ = proc.communicate()
        if proc.returncode:
            sys.exit(f"{name} run failed with exit code {proc.returncode}")
        r = json.loads(out.strip().splitlines()[-1])
        print(
            f"{name:6} {args.steps} steps  AP {r['ap']:.4f}  AP50 {r['ap50']:.4f}  "
            f"PCK {r['pck']:.4f}  ({r['seconds']:.0f} s)"
        )


if __name__ == "__main__":
    main()

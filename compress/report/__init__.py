"""Reports rendered from report.json (the source of truth): report.md and a self-contained
report.html with its plots embedded."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np

STATUS = {
    "verified": "exported and verified",
    "failed check": "exported but failed a check",
    "runtime failed": "exported but failed to run",
    "export failed": "export failed",
}


def summary_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per artifact (and per failed export): what the summary tables show."""
    verification = report.get("verification") or {}
    rows = []
    for row in verification.get("artifacts", []):
        latency = {lat["threads"]: lat["median_ms"] for lat in row.get("latency", [])}
        rows.append(
            {
                "target": row["target"],
                "status": STATUS.get(row["status"], row["status"]),
                "file": row["file"],
                "size_mb": row.get("bytes", 0) / 1e6,
                "ap": row.get("metrics", {}).get("ap"),
                "ap_drop": row.get("drop", {}).get("ap"),
                "pck": row.get("metrics", {}).get("pck"),
                "p50_ms": latency.get(1),
                "runtime": row.get("runtime", ""),
                "failed_checks": row.get("failed_checks", []),
            }
        )
    for target, error in (report.get("export_failed") or {}).items():
        rows.append({"target": target, "status": STATUS["export failed"], "error": error})
    return rows


def _fmt(value: Any, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def render_markdown(report: dict[str, Any]) -> str:
    lines = [f"# {report['name']}", ""]
    start = report.get("start") or {}
    lines += [f"Float model before the stages: AP {_fmt(start.get('ap'), '{:.4f}')}, "
              f"PCK {_fmt(start.get('pck'), '{:.4f}')}.", ""]  # fmt: skip
    lines += ["## Stages", "", "| stage | AP before | AP after | MACs before | MACs after | s |",
              "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for s in report.get("stages", []):
        lines.append(
            f"| {s['stage']} | {s['metrics_before']['ap']:.4f} | {s['metrics_after']['ap']:.4f} "
            f"| {s['macs_before'] / 1e9:.3f} G | {s['macs_after'] / 1e9:.3f} G "
            f"| {s['seconds']:.0f} |"
        )
    rows = summary_rows(report)
    if rows:
        verification = report.get("verification") or {}
        lines += ["", "## Artifacts", "",
                  f"Measured on {verification.get('device', 'this machine')}; latency is the "
                  "median of timed runs at 1 thread.", "",
                  "| artifact | status | size | AP | AP drop (points) | PCK | p50 | runtime |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        for r in rows:
            lines.append(
                f"| {r['target']} | {r['status']} | {_fmt(r.get('size_mb'), '{:.2f} MB')} | "
                f"{_fmt(r.get('ap'), '{:.4f}')} | {_fmt(r.get('ap_drop'), '{:.2f}')} | "
                f"{_fmt(r.get('pck'), '{:.4f}')} | {_fmt(r.get('p50_ms'), '{:.2f} ms')} | "
                f"{r.get('runtime', '')} |"
            )
    failed = report.get("checks_failed") or []
    if failed:
        lines += ["", "## Failed checks", ""] + [f"- {f}" for f in failed]
    return "\n".join(lines) + "\n"


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def plots(report: dict[str, Any]) -> dict[str, str]:
    """name -> base64 PNG: accuracy vs latency, latency bars, per-joint PCK drop."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    verification = report.get("verification") or {}
    rows = [r for r in verification.get("artifacts", []) if r.get("metrics")]
    if not rows:
        return {}
    images: dict[str, str] = {}
    float_block = verification["float"]
    float_p50 = {lat["threads"]: lat["median_ms"] for lat in float_block["latency"]}

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        p50 = {lat["threads"]: lat["median_ms"] for lat in r["latency"]}.get(1)
        ax.scatter(p50, r["metrics"]["ap"], s=40)
        ax.annotate(r["target"], (p50, r["metrics"]["ap"]), fontsize=8, xytext=(4, 2),
                    textcoords="offset points")  # fmt: skip
    ax.axhline(float_block["metrics"]["ap"], color="grey", linestyle="--", label="float model")
    ax.set_xlabel("latency p50, 1 thread (ms)")
    ax.set_ylabel("OKS-AP")
    ax.set_title("Accuracy against latency")
    ax.legend(fontsize=8)
    images["accuracy_latency"] = _png(fig)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 3.5))
    threads = verification.get("threads", [1])
    labels = ["float (PyTorch)"] + [r["target"] for r in rows]
    width = 0.8 / max(1, len(threads))
    for i, t in enumerate(threads):
        values = [float_p50.get(t)] + [
            {lat["threads"]: lat["median_ms"] for lat in r["latency"]}.get(t) for r in rows
        ]
        xs = [j + i * width for j in range(len(labels))]
        ax.bar(xs, [v or 0 for v in values], width, label=f"{t} thread(s)")
    ax.set_xticks([j + width * (len(threads) - 1) / 2 for j in range(len(labels))])
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("latency p50 (ms)")
    ax.set_title(f"Latency on {verification.get('device', 'this machine')}", fontsize=9)
    ax.legend(fontsize=8)
    images["latency"] = _png(fig)
    plt.close(fig)

    joints = list(float_block["metrics"]["per_joint_pck"])
    fig, ax = plt.subplots(figsize=(8, 3.5))
    width = 0.8 / len(rows)
    for i, r in enumerate(rows):
        drops = [100 * (float_block["metrics"]["per_joint_pck"][j]
                        - r["metrics"]["per_joint_pck"][j]) for j in joints]  # fmt: skip
        ax.bar([k + i * width for k in range(len(joints))], drops, width, label=r["target"])
    ax.set_xticks(range(len(joints)))
    ax.set_xticklabels(joints, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("PCK drop (points)")
    ax.set_title("Per-joint PCK drop against the float model")
    ax.legend(fontsize=7)
    images["per_joint"] = _png(fig)
    plt.close(fig)
    return images


def render_html(report: dict[str, Any], overlays: str | None = None) -> str:
    """A self-contained page: the summary table, the stages and every plot inline;
    ``overlays`` is the base64 PNG of the skeleton grid (see :mod:`compress.report.overlays`)."""
    esc = html.escape
    rows = summary_rows(report)
    table = "".join(
        f"<tr><td>{esc(r['target'])}</td><td>{esc(r['status'])}</td>"
        f"<td>{_fmt(r.get('size_mb'), '{:.2f} MB')}</td><td>{_fmt(r.get('ap'), '{:.4f}')}</td>"
        f"<td>{_fmt(r.get('ap_drop'), '{:.2f}')}</td><td>{_fmt(r.get('pck'), '{:.4f}')}</td>"
        f"<td>{_fmt(r.get('p50_ms'), '{:.2f} ms')}</td><td>{esc(r.get('runtime', ''))}</td></tr>"
        for r in rows
    )
    stages = "".join(
        f"<tr><td>{esc(s['stage'])}</td><td>{s['metrics_before']['ap']:.4f}</td>"
        f"<td>{s['metrics_after']['ap']:.4f}</td><td>{s['macs_before'] / 1e9:.3f} G</td>"
        f"<td>{s['macs_after'] / 1e9:.3f} G</td><td>{s['seconds']:.0f} s</td></tr>"
        for s in report.get("stages", [])
    )
    figures = "".join(
        f'<figure><img alt="{esc(name)}" src="data:image/png;base64,{data}"></figure>'
        for name, data in plots(report).items()
    )
    crops = (
        "<h2>Val crops</h2><p>The float model's keypoints (blue, dashed) and each artifact's "
        f'(red) on the first val crops.</p><figure><img alt="overlays" class="wide" '
        f'src="data:image/png;base64,{overlays}"></figure>'
        if overlays
        else ""
    )
    failed = "".join(f"<li>{esc(f)}</li>" for f in report.get("checks_failed") or [])
    device = esc((report.get("verification") or {}).get("device", "this machine"))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{esc(report["name"])} - pocket report</title>
<style>
body {{ font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; font-size: 13px; text-align: left; }}
th {{ background: #f3f3f3; }}
figure {{ display: inline-block; margin: 0.5em; }}
img {{ max-width: 720px; }}
img.wide {{ max-width: 100%; }}
.failed {{ color: #b00; }}
</style></head><body>
<h1>{esc(report["name"])}</h1>
<h2>Artifacts</h2>
<p>Measured on {device}; latency is the median at 1 thread.</p>
<table><tr><th>artifact</th><th>status</th><th>size</th><th>AP</th><th>AP drop (points)</th>
<th>PCK</th><th>p50</th><th>runtime</th></tr>{table}</table>
{f'<h2 class="failed">Failed checks</h2><ul class="failed">{failed}</ul>' if failed else ""}
<h2>Stages</h2>
<table><tr><th>stage</th><th>AP before</th><th>AP after</th><th>MACs before</th>
<th>MACs after</th><th>time</th></tr>{stages}</table>
<h2>Plots</h2>{figures}
{crops}
</body></html>
"""


def write_reports(
    report: dict[str, Any], folder: Path, crops: np.ndarray | None = None, spec=None
) -> list[Path]:
    """report.md and report.html; with the val ``crops`` (uint8 NHWC, the ones the examples'
    keypoints were decoded on) and the PoseSpec, report.html also gets the skeleton grid."""
    md, page = folder / "report.md", folder / "report.html"
    md.write_text(render_markdown(report))
    overlays = None
    verification = report.get("verification")
    if crops is not None and spec is not None and verification:
        import matplotlib.pyplot as plt

        from compress.report.overlays import overlay_grid

        figure = overlay_grid(crops, verification, spec)
        if figure is not None:
            overlays = _png(figure)
            plt.close(figure)
    page.write_text(render_html(report, overlays))
    return [md, page]

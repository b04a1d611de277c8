"""Recipe gates over the verification: each failure names the artifact, metric and limit."""

from __future__ import annotations

from typing import Any

from compress.recipe import ChecksSection


def _limit_for(target: str, limits: dict[str, float]) -> float | None:
    fmt = target.split(":", 1)[0]
    return limits.get(target, limits.get(fmt))


def apply_gates(verification: dict[str, Any], sizes: dict[str, int], checks: ChecksSection
                ) -> list[str]:  # fmt: skip
    """Mark artifacts that fail a gate ("failed check") and return the failure messages."""
    failures: list[str] = []
    for row in verification["artifacts"]:
        target, mine = row["target"], []
        if row["status"] == "runtime failed":
            mine.append(f"{target}: could not run in its runtime ({row['error']})")
        else:
            drop = row["drop"]
            if checks.max_ap_drop is not None and drop["ap"] > checks.max_ap_drop:
                mine.append(f"{target}: AP drop {drop['ap']:.2f} points > max_ap_drop "
                            f"{checks.max_ap_drop}")  # fmt: skip
            if checks.max_pck_drop is not None and drop["pck"] > checks.max_pck_drop:
                mine.append(f"{target}: PCK drop {drop['pck']:.2f} points > max_pck_drop "
                            f"{checks.max_pck_drop}")  # fmt: skip
            for key, limit in checks.max_latency_ms.items():
                name, _, threads = key.partition("@")
                if name not in (target, target.split(":")[0]):
                    continue
                want = int(threads or 1)
                for lat in row["latency"]:
                    if lat["threads"] == want and lat["median_ms"] > limit:
                        mine.append(f"{target}: latency p50 {lat['median_ms']:.2f} ms at {want} "
                                    f"thread(s) > max_latency_ms[{key}] {limit}")  # fmt: skip
        size_limit = _limit_for(target, checks.max_size_mb)
        if size_limit is not None and sizes.get(target, 0) / 1e6 > size_limit:
            mine.append(f"{target}: size {sizes[target] / 1e6:.2f} MB > max_size_mb {size_limit}")
        if mine and row["status"] == "verified":
            row["status"] = "failed check"
        row["failed_checks"] = mine
        failures += mine
    return failures

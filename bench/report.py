"""Formatting helpers for the bench's printed summary table (Markdown table syntax)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence


def median(xs: Iterable[float]) -> float:
    xs = list(xs)
    return statistics.median(xs) if xs else float("nan")


def fmt_s(x: float | None) -> str:
    return "–" if x is None or math.isnan(x) else f"{x:.2f} s"


def fmt_mb_s(nbytes: int, seconds: float | None) -> str:
    return "–" if not seconds or math.isnan(seconds) else f"{nbytes / seconds / 1e6:.0f} MB/s"


def fmt_ratio(x: float | None) -> str:
    return "–" if x is None or math.isnan(x) else f"{x:.2f}"


def fmt_mib(kib: float | None) -> str:
    return "–" if kib is None else f"{kib / 1024:.0f} MiB"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    for row in rows:
        out.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(out)


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**missed**")

"""The Markdown table of bench/scale.py: one line per operation and way of measuring, one column
per size; each cell the median with ✓/✗ against the target (n/a: not measurable on this code)."""

from __future__ import annotations

from typing import Any

from bench.scale_measure import Sample
from bench.scale_rows import PROCESS_READ_MS, VERSION_ROW, read_rows, snapshot_rows

REBUILD_TARGET = 50_000.0  # events/s


def _ms_text(ms: float) -> str:
    if ms >= 1000:
        return f"{ms / 1000:.2f} s"
    return f"{ms:.1f} ms" if ms < 100 else f"{ms:.0f} ms"


def ms_cell(sample: Sample | None, target_ms: float | None) -> str:
    """``83 ms (best 80 ms, n=5) ✗``: median, best and samples; statements when in-process."""
    if sample is None:
        return "—"
    if sample.error or sample.median_s is None:
        return f"n/a ({(sample.error or '')[:40]})"
    ms = sample.median_s * 1000
    text = _ms_text(ms)
    if len(sample.times_s) > 1:
        text += f" (best {_ms_text((sample.best_s or 0) * 1000)}, n={len(sample.times_s)})"
    if sample.statements:
        text += f", {int(sorted(sample.statements)[len(sample.statements) // 2])} stmts"
    if target_ms is not None:
        text += " ✓" if ms <= target_ms else " ✗"
    return text


def rate_cell(out: dict[str, Any] | None) -> str:
    """``8.0k events/s ✗`` for a rebuild result."""
    if out is None:
        return "—"
    if out.get("exit"):
        return f"exit {out['exit']}"
    rate = out["events_per_s"]
    mark = " ✓" if rate >= REBUILD_TARGET else " ✗"
    return f"{rate / 1000:.1f}k events/s{mark}"


def _target(ms: float | None) -> str:
    return "" if ms is None else f"≤ {ms:g} ms"


def render_table(dialect: str, version: Sample, per_size: dict[str, dict[str, Any]]) -> str:
    """The table for ``per_size`` (size → results of bench/scale.py)."""
    sizes = list(per_size)
    head = f"| operation ({dialect}) | measured | target | " + " | ".join(sizes) + " |"
    lines = [head, "|" + "---|" * (3 + len(sizes))]
    rows = read_rows("WORD", {"1000": "", "10000": ""}, True)
    rows += [r for n in (1000, 100, 10) for r in snapshot_rows(n, n, "x" if n == 1000 else None)]
    for row in rows:
        cells = [per_size[s].get(row.key, {}) for s in sizes]
        label = next((c["label"] for c in cells if "label" in c), row.label)
        target = row.process_target_ms if row.process_target_ms else None
        lines.append(_line(label, "process", _target(target),
                           [ms_cell(c.get("process"), target) for c in cells]))  # fmt: skip
        if row.inprocess is not None:
            t = row.inprocess_target_ms
            lines.append(_line(label, "in-process", _target(t),
                               [ms_cell(c.get("inprocess"), t) for c in cells]))  # fmt: skip
    for key in ("rebuild", "rebuild_check"):
        label = "`projections rebuild" + (" --check`" if key.endswith("check") else "`")
        cells = [rate_cell(per_size[s].get(key)) for s in sizes]
        lines.append(_line(label, "process", "≥ 50k events/s", cells))
    first = [ms_cell(version, VERSION_ROW.process_target_ms)] + [""] * (len(sizes) - 1)
    lines.append(_line(VERSION_ROW.label, "process", "≤ 60 ms", first))
    asks = [per_size[s].get("forum_ask") for s in sizes]
    if any(asks):
        cells = [ms_cell(a, 200) if isinstance(a, Sample) else "—" for a in asks]
        lines.append(_line("`forum ask` (process start → applied, p50)", "process", "≤ 200 ms",
                           cells))  # fmt: skip
    lines.append(
        "\nmedian (best, samples) and ✓/✗ of the median; process = wall time of the `metawsm`"
        " process; in-process = the service call on a warm engine, with its SQL statements;"
        " reads not named in the issue have the"
        f" {PROCESS_READ_MS:g} ms process target."
    )
    return "\n".join(line for line in lines if line != "")


def _line(label: str, how: str, target: str, cells: list[str]) -> str:
    if all(c in ("—", "") for c in cells):
        return ""  # not measured in this report (skipped): no line
    return f"| {label} | {how} | {target} | " + " | ".join(cells) + " |"

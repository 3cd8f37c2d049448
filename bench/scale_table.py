"""The Markdown table of bench/scale.py: one line per operation and way of measuring, one column
per size; each cell the median with ✓/✗ against the target (n/a: not measurable on this code)."""

from __future__ import annotations

from typing import Any

from bench.scale_measure import Sample
from bench.scale_rows import PROCESS_READ_MS, VERSION_ROW, read_rows, snapshot_rows

REBUILD_TARGET = 50_000.0  # events/s
ASK_TARGET_MS = 200.0  # forum ask, process start → applied


def _ms_text(ms: float) -> str:
    if ms >= 1000:
        return f"{ms / 1000:.2f} s"
    return f"{ms:.1f} ms" if ms < 100 else f"{ms:.0f} ms"


def ms_cell(sample: Sample | None, target_ms: float | None) -> str:
    """``83 ms (p99 95 ms, best 80 ms, n=5; CPU 71 ms), 14 stmts ✗``: median wall time, its
    p99, best and samples, median CPU time; statements when in-process; ✓/✗ of the median."""
    if sample is None:
        return "—"
    if sample.error or sample.median_s is None:
        return f"n/a ({(sample.error or '')[:40]})"
    ms = sample.median_s * 1000
    text = _ms_text(ms)
    details = []
    if len(sample.times_s) > 1:
        details.append(f"p99 {_ms_text((sample.p99_s or 0) * 1000)}")
        details.append(f"best {_ms_text((sample.best_s or 0) * 1000)}")
    details.append(f"n={len(sample.times_s)}")
    extra = ", ".join(details)
    if sample.cpu_median_s is not None:
        extra += f"; CPU {_ms_text(sample.cpu_median_s * 1000)}"
    text += f" ({extra})"
    if sample.statements:
        text += f", {int(sorted(sample.statements)[len(sample.statements) // 2])} stmts"
    if target_ms is not None:
        text += " ✓" if ms <= target_ms else " ✗"
    return text


def rate_cell(out: dict[str, Any] | None) -> str:
    """``98.1k events/s (0.32 s) ✓`` for a rebuild result: its events over its own time, as
    the command reports it (judged against the target)."""
    if out is None:
        return "—"
    if out.get("exit"):
        return f"exit {out['exit']}"
    rate = out.get("rebuild_events_per_s")
    if rate is None:  # a result of an older bench/scale.py: the process's rate, judged
        return process_rate_cell(out)
    mark = " ✓" if rate >= REBUILD_TARGET else " ✗"
    return f"{rate / 1000:.1f}k events/s ({out['rebuild_s']:.2f} s){mark}"


def process_rate_cell(out: dict[str, Any] | None) -> str:
    """``51.3k events/s (wall 0.61 s, CPU 0.61 s) ✓`` for a rebuild result: its events over the
    whole process (Python's and the libraries' start included), judged against the target."""
    if out is None:
        return "—"
    if out.get("exit"):
        return f"exit {out['exit']}"
    times = f"wall {out['wall_s']:.2f} s"
    if out.get("cpu_s") is not None:
        times += f", CPU {out['cpu_s']:.2f} s"
    mark = " ✓" if out["events_per_s"] >= REBUILD_TARGET else " ✗"
    return f"{out['events_per_s'] / 1000:.1f}k events/s ({times}){mark}"


def _target(ms: float | None) -> str:
    return "" if ms is None else f"≤ {ms:g} ms"


def render_table(dialect: str, version: Sample | None, per_size: dict[str, dict[str, Any]]) -> str:
    """The table for ``per_size`` (size → results of bench/scale.py), with the load average
    while each size was measured."""
    sizes = list(per_size)
    head = f"| operation ({dialect}) | measured | target | " + " | ".join(sizes) + " |"
    lines = [head, "|" + "---|" * (3 + len(sizes))]
    rows = read_rows("WORD", {"1000": "", "10000": ""}, True)
    rows += [r for n in (1000, 100, 10) for r in snapshot_rows(n, n, "x" if n == 1000 else None)]
    for row in rows:
        cells = [per_size[s].get(row.key, {}) for s in sizes]
        label = next((c["label"] for c in cells if "label" in c), row.label)
        target = row.process_target_ms if row.process_target_ms else None
        if row.cli is not None:
            lines.append(_line(label, "process", _target(target),
                               [ms_cell(c.get("process"), target) for c in cells]))  # fmt: skip
        if row.inprocess is not None:
            t = row.inprocess_target_ms
            lines.append(_line(label, "in-process", _target(t),
                               [ms_cell(c.get("inprocess"), t) for c in cells]))  # fmt: skip
    for key in ("rebuild", "rebuild_check"):
        label = "`projections rebuild" + (" --check`" if key.endswith("check") else "`")
        results = [per_size[s].get(key) for s in sizes]
        lines.append(_line(label, "its report", "≥ 50k events/s", [rate_cell(r) for r in results]))
        if any(r and "rebuild_events_per_s" in r for r in results):
            lines.append(_line(label, "process", "≥ 50k events/s",
                               [process_rate_cell(r) for r in results]))  # fmt: skip
    if version is not None:
        first = [ms_cell(version, VERSION_ROW.process_target_ms)] + [""] * (len(sizes) - 1)
        lines.append(_line(VERSION_ROW.label, "process", "≤ 60 ms", first))
    asks = [per_size[s].get("forum_ask") for s in sizes]
    if any(asks):
        cells = [ms_cell(a, ASK_TARGET_MS) if isinstance(a, Sample) else "—" for a in asks]
        lines.append(_line("`forum ask` (process start → applied, p50)", "process",
                           f"≤ {ASK_TARGET_MS:g} ms", cells))  # fmt: skip
    lines.append(
        "\nmedian = p50 wall time (p99 nearest rank, best, samples; median CPU time: user +"
        " system) and ✓/✗ of the median; process = the `metawsm` console script from fork to"
        " exit, its CPU from getrusage of the reaped child; in-process = the service call on a"
        " warm engine (this process's CPU), with its SQL statements counted through SQLAlchemy"
        " and on the driver; reads not named in the issue have the"
        f" {PROCESS_READ_MS:g} ms process target; a rebuild's rate is judged twice: by its"
        " report (its events over its own time as the command reports it, `seconds`) and as a"
        " process (fork to exit: Python's and SQLAlchemy's start included, ~0.2 s)."
    )
    loads = [f"{s} {_load_text(per_size[s].get('load'))}" for s in sizes if per_size[s].get("load")]
    if loads:
        lines.append("load average (1/5/15 min) at start → end of each size: " + "; ".join(loads))
    stolen = [f"{s} {per_size[s]['steal_pct']} %" for s in sizes
              if per_size[s].get("steal_pct") is not None]  # fmt: skip
    if stolen:
        lines.append("CPU time stolen by the hypervisor during each size: " + "; ".join(stolen))
    return "\n".join(line for line in lines if line != "")


def _load_text(load: dict[str, Any] | None) -> str:
    if not load:
        return "?"
    start, end = load.get("start") or [], load.get("end") or []
    return "/".join(f"{x:g}" for x in start) + " → " + "/".join(f"{x:g}" for x in end)


def _line(label: str, how: str, target: str, cells: list[str]) -> str:
    if all(c in ("—", "") for c in cells):
        return ""  # not measured in this report (skipped): no line
    return f"| {label} | {how} | {target} | " + " | ".join(cells) + " |"

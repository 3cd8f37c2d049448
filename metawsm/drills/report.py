"""A drill's report: the counts, the fault, the recovery, what was seen; text or one JSON object."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from metawsm.drills.tally import Tally


@dataclass
class DrillReport:
    """Everything a drill measured. ``ok`` when nothing was lost or applied twice and the read
    models equal the fold of the log."""

    drill: str
    duration_s: float
    rate: float
    database: str
    tally: Tally
    read_model_differences: list[str]
    time_to_recover_s: float | None
    fault_started_s: float
    fault_ended_s: float
    elapsed_s: float
    fault: list[str] = field(default_factory=list)
    observed: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the drill passed."""
        return self.tally.ok and not self.read_model_differences

    def as_dict(self) -> dict[str, Any]:
        """The report as one JSON-ready object."""
        t = self.tally
        return {
            "drill": self.drill,
            "ok": self.ok,
            "submitted": t.submitted,
            "applied": t.applied,
            "rejected": t.rejected,
            "dead": t.dead,
            "lost": t.lost,
            "lost_commands": t.lost_commands,
            "lost_events": t.lost_events,
            "duplicated": t.duplicated,
            "lost_ids": t.lost_ids,
            "duplicated_ids": t.duplicated_ids,
            "read_model_differences": len(self.read_model_differences),
            "read_model_difference_lines": self.read_model_differences[:10],
            "time_to_recover_s": self.time_to_recover_s,
            "fault_started_s": round(self.fault_started_s, 2),
            "fault_ended_s": round(self.fault_ended_s, 2),
            "fault": self.fault,
            "observed": self.observed,
            "duration_s": self.duration_s,
            "rate": self.rate,
            "database": self.database,
            "elapsed_s": round(self.elapsed_s, 1),
            "timings": self.timings,
        }


def render_text(report: DrillReport) -> str:
    """The report for a person: counts first, then the fault and what was seen."""
    t = report.tally
    recover = (
        f"{report.time_to_recover_s:.1f} s"
        if report.time_to_recover_s is not None
        else "not recovered"
    )
    lines = [
        f"drill {report.drill}: {'PASSED' if report.ok else 'FAILED'}"
        f" ({report.duration_s:g} s at {report.rate:g} commands/s on {report.database},"
        f" {report.elapsed_s:.0f} s in all)",
        f"  submitted {t.submitted}  applied {t.applied}  rejected {t.rejected}  dead {t.dead}",
        f"  lost {t.lost} (commands {t.lost_commands}, unprojected events {t.lost_events})"
        f"  duplicated {t.duplicated}  read-model differences"
        f" {len(report.read_model_differences)}",
        f"  time to recover {recover} (fault end -> everything accepted by then final and"
        " projected)",
        f"  fault from {report.fault_started_s:.1f} s to {report.fault_ended_s:.1f} s:",
        *(f"    {note}" for note in report.fault),
        "  observed:",
        *(f"    {note}" for note in report.observed),
    ]
    if t.lost_ids:
        lines.append(f"  lost: {', '.join(t.lost_ids)}")
    if t.duplicated_ids:
        lines.append(f"  duplicated: {', '.join(t.duplicated_ids)}")
    lines += [f"  differs: {line}" for line in report.read_model_differences[:10]]
    return "\n".join(lines)

"""Rendering the typed snapshot as terminal text (tables; colour only on a terminal)."""

from __future__ import annotations

import os
import sys

import click

from metawsm.cli.tables import table
from metawsm.domain.snapshot import RunSnapshot

__all__ = ["paint", "render_run", "table", "use_colour"]

COLOURS = {
    "failed": "red",
    "stopped": "red",
    "awaiting_guidance": "yellow",
    "completed": "green",
    "closed": "green",
    "running": "cyan",
}


def use_colour() -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def paint(text: str, colour: str | None) -> str:
    """``text`` in ``colour`` when colour is on."""
    return click.style(text, fg=colour) if colour and use_colour() else text


def _age(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


def render_run(run: RunSnapshot) -> list[str]:
    """The status view of one run."""
    lines = [
        f"Run: {run.run_id}  Status: {paint(run.status, COLOURS.get(run.status))}"
        f"  Mode: {run.mode}  Tickets: {', '.join(run.tickets)}  Epoch: {run.control_epoch}",
    ]
    if run.brief:
        lines.append(f"Brief: goal={run.brief.goal}  done={run.brief.done_criteria}")
    lines += [
        "",
        "Agents:",
        *_indent(
            table(
                ["agent", "status", "pending", "completed", "validation", "last signal"],
                [
                    [
                        a.agent_name,
                        a.status,
                        "yes" if a.pending_guidance else "no",
                        "yes" if a.completed else "no",
                        a.validation_status,
                        a.last_signal_at.isoformat(timespec="seconds")
                        if a.last_signal_at
                        else None,
                    ]
                    for a in run.agents
                ],
            )
        ),
    ]
    if run.pending_guidance:
        lines += [
            "",
            paint("Pending guidance:", "yellow"),
            *_indent(
                table(
                    ["agent", "age", "thread", "question"],
                    [
                        [g.agent_name, _age(g.age_s), g.thread_id, g.question]
                        for g in run.pending_guidance
                    ],
                )
            ),
        ]
    counts = " ".join(f"{k}={v}" for k, v in sorted(run.queue_counts.items())) or "none"
    lines += ["", f"Forum: {counts}  unanswered={run.unanswered_count}"]
    if run.open_threads:
        lines += _indent(
            table(
                ["thread", "state", "priority", "age", "title"],
                [
                    [t.thread_id, t.state, t.priority, _age(t.age_s), t.title]
                    for t in run.open_threads
                ],
            )
        )
    escalations = run.escalations + run.escalation_candidates
    if escalations:
        lines += [
            "",
            paint("Escalations:", "red"),
            *_indent(
                table(
                    ["thread", "tier", "raised", "age", "reason"],
                    [
                        [e.thread_id, e.tier, "yes" if e.raised else "due", _age(e.age_s), e.reason]
                        for e in escalations
                    ],
                )
            ),
        ]
    if run.blockers:
        lines += ["", "Blockers:"]
        for b in run.blockers:
            lines.append(f"  - {b.reason}")
            if b.fix:
                lines.append(f"      fix: {b.fix}")
    lines.append(f"Last event: {run.last_event_sequence}")
    return lines


def _indent(lines: list[str]) -> list[str]:
    return [f"  {line}" for line in lines]

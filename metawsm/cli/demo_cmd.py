"""``metawsm demo``: a complete bootstrap story played against the running stack.

Every step is a real ``metawsm`` command run as its own process in this directory with this
environment (the commands an agent or operator would type), printed before it runs, with its
output: a bootstrap run with two agents; the builder asks for guidance and waits; the operator
answers and the waiting agent gets the answer; both agents report completion and validation;
``run why`` shows every gate met; the run is closed. Writes wait until the stack has applied
them, so the demo fails (exit 1, naming the step) when no worker is running.
"""

from __future__ import annotations

import json
import secrets
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import click

STEP_TIMEOUT_S = 60.0
POLL_S = 0.2
AGENTS = ("planner", "builder")
DONE_CRITERIA = "the demo story ends with the run closed"


class DemoFailed(click.ClickException):
    """A step of the demo failed: its command, exit code and output are in the message."""

    exit_code = 1


@dataclass
class Story:
    """Runs ``metawsm`` steps as child processes and prints each with its output."""

    echo: bool = True

    def argv(self, args: Sequence[str]) -> list[str]:
        """The child's argv: this interpreter running ``metawsm`` with ``args``."""
        return [sys.executable, "-m", "metawsm", *args]

    def show(self, args: Sequence[str], background: bool = False) -> None:
        """Print the command as a user would type it (``&``: run in the background)."""
        if self.echo:
            line = shlex.join(["metawsm", *args]) + (" &" if background else "")
            click.secho(f"$ {line}", bold=True)

    def run(self, args: Sequence[str], *, quiet: bool = False) -> str:
        """Run one step; its stdout. Raises DemoFailed on a non-zero exit or a timeout."""
        if not quiet:
            self.show(args)
        try:
            done = subprocess.run(
                self.argv(args), capture_output=True, text=True, timeout=STEP_TIMEOUT_S
            )
        except subprocess.TimeoutExpired as exc:
            raise DemoFailed(f"`metawsm {shlex.join(args)}` took over {exc.timeout:g} s") from exc
        if done.returncode != 0:
            raise DemoFailed(
                f"`metawsm {shlex.join(args)}` exited {done.returncode}: "
                f"{(done.stderr or done.stdout).strip()}\n"
                "is the stack running? (./scripts/start, or metawsm up)"
            )
        if not quiet:
            self.print_output(done.stdout)
        return done.stdout

    def json(self, args: Sequence[str]) -> Any:
        """Run a ``--json`` step and parse its output (printed compactly)."""
        self.show(args)
        out = json.loads(self.run([*args, "--json"], quiet=True))
        self.print_output(_summary(out))
        return out

    def print_output(self, text: str) -> None:
        """Print a step's output, indented under its command."""
        if self.echo:
            for line in text.rstrip().splitlines():
                click.echo(f"  {line}")
            click.echo()


def _summary(out: Any) -> str:
    keys = ("run_id", "status", "command_type", "thread_id", "mode", "closed")
    if isinstance(out, dict):
        return " ".join(f"{k}={out[k]}" for k in keys if k in out) or json.dumps(out)
    return json.dumps(out)


def play(story: Story, ticket: str) -> str:
    """Play the whole story on ``ticket``; the run id."""
    brief = ["--goal", "show metawsm end to end", "--scope", "demo"]
    brief += ["--done-criteria", DONE_CRITERIA, "--constraints", "none"]
    agents = [w for a in AGENTS for w in ("--agent", a)]
    create = ["run", "create", "--mode", "bootstrap", "--ticket", ticket, *agents, *brief]
    run_id = str(story.json(create)["run_id"])
    waiting = _ask_and_wait(story, run_id)
    _wait_for_status(story, run_id, "awaiting_guidance")
    story.run(["run", "show", "--run-id", run_id])
    answer = "Use SQLite for the demo; PostgreSQL when workers span machines."
    story.run(_signal(run_id, "builder", "guidance_answer", "--answer", answer))
    out, _ = waiting.communicate(timeout=STEP_TIMEOUT_S)
    click.secho("  (the builder's waiting `forum signal --wait` returned:)", dim=True)
    story.print_output(out)
    if waiting.returncode != 0 or answer not in out:
        raise DemoFailed(f"the waiting agent did not get the answer (exit {waiting.returncode})")
    for agent in AGENTS:
        story.run(_signal(run_id, agent, "completion", "--summary", f"{agent}: done"))
        story.run(
            _signal(run_id, agent, "validation", "--status", "passed", "--done-criteria",
                    DONE_CRITERIA)
        )  # fmt: skip
    _wait_for_status(story, run_id, "completed")
    story.run(["run", "why", "--run-id", run_id])
    story.run(["close", "--run-id", run_id])
    story.run(["status", "--run-id", run_id])
    return run_id


def _signal(run_id: str, agent: str, kind: str, *extra: str) -> list[str]:
    return ["forum", "signal", "--run-id", run_id, "--agent-name", agent, "--type", kind, *extra]


def _ask_and_wait(story: Story, run_id: str) -> subprocess.Popen[str]:
    """The builder asks and blocks until answered, in the background, as an agent would."""
    args = _signal(run_id, "builder", "guidance_request", "--question", "Which database?")
    args += ["--wait", "--timeout", f"{STEP_TIMEOUT_S:g}s"]
    story.show(args, background=True)
    if story.echo:
        click.echo("  (the builder waits for the answer in the background)\n")
    return subprocess.Popen(
        story.argv(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _wait_for_status(story: Story, run_id: str, status: str) -> None:
    """Poll ``run show`` until the run has ``status``. Raises DemoFailed after the step timeout."""
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while time.monotonic() < deadline:
        shown = story.run(["run", "show", "--run-id", run_id, "--json"], quiet=True)
        if json.loads(shown)["status"] == status:
            return
        time.sleep(POLL_S)  # polling a condition with a deadline
    raise DemoFailed(f"run {run_id} did not reach {status} within {STEP_TIMEOUT_S:g} s")


@click.command("demo")
@click.option("--ticket", help="Ticket of the demo run (default: DEMO-<random>).")
def demo(ticket: str | None) -> None:
    """Play a bootstrap story against the running stack, printing each command and its output.

    Exit 1 naming the failed step (e.g. when no worker runs).

    \b
    Example:
      metawsm demo --ticket DEMO-1
    """
    started = time.monotonic()
    story = Story()
    run_id = play(story, ticket or f"DEMO-{secrets.token_hex(3).upper()}")
    click.secho(
        f"demo complete: run {run_id} closed in {time.monotonic() - started:.1f} s", fg="green"
    )

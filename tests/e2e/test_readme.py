"""The README's walk-through works as written: its ``sh`` blocks, in order, in a terminal, against
the stack ``./scripts/start`` runs (``metawsm up`` in a fresh directory).

Every ```` ```sh ```` block of README.md is a step of the walk-through (synopses with
placeholders are ```` ```text ````); the first one, ``./scripts/start``, is what this test does
itself. The blocks run as one bash script with ``set -euo pipefail`` on a pseudo-terminal (as a
person pastes them: writes wait until the read models show them), in the stack's directory with
no METAWSM_DATABASE_URL (the database is found in ``.metawsm/``). A command that exits non-zero
by design says so in the README (``|| test $? -eq 6``).
"""

from __future__ import annotations

import os
import pty
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import metawsm
from metawsm.transport.redis_server import free_port
from tests.fixtures.conditions import wait_until

ROOT = Path(metawsm.__file__).resolve().parents[1]
README = ROOT / "README.md"
UP_TIMEOUT_S = 90.0
SCRIPT_TIMEOUT_S = 300.0
BLOCK = re.compile(r"^```sh\n(.*?)^```", re.S | re.M)


def walk_through() -> list[str]:
    """The ``sh`` blocks of the README after the one that starts the stack."""
    blocks = BLOCK.findall(README.read_text())
    assert blocks and "./scripts/start" in blocks[0]
    return blocks[1:]


def _env(broker: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METAWSM_")}
    path = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env.update(
        PYTHONPATH=os.pathsep.join(path),
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        METAWSM_BROKER_URL=broker,
        NO_COLOR="1",
    )
    return env


def run_in_terminal(script: Path, env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """``bash SCRIPT`` with stdout and stderr on a pseudo-terminal; (exit code, transcript)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        ["bash", str(script)],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    os.close(follower)
    chunks: list[bytes] = []

    def pump() -> None:
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: every writer closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=SCRIPT_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        reader.join(timeout=10)
        os.close(leader)
    return code, b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")


def test_the_readme_walk_through_runs_as_written_against_a_started_stack(tmp_path: Path) -> None:
    broker = f"redis://127.0.0.1:{free_port()}/0"  # nothing there: up starts a private Redis
    env = _env(broker)
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        up = subprocess.Popen(
            [sys.executable, "-m", "metawsm", "up", "--no-flower", "--no-metrics"],
            env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:

        def ready() -> bool:
            assert up.poll() is None, log.read_text(errors="replace")[-3000:]
            return "up: ready in " in log.read_text(errors="replace")

        wait_until(ready, UP_TIMEOUT_S, "the ready summary")
        script = tmp_path / "walk-through.sh"
        script.write_text("set -euo pipefail\nset -x\n" + "\n".join(walk_through()))
        code, transcript = run_in_terminal(script, env, tmp_path)
    finally:
        os.killpg(up.pid, signal.SIGINT)
        up.wait(timeout=60)
    assert code == 0, transcript[-6000:]
    # What the walk-through says each step shows.
    for shown in (
        "Use SQLite",  # the waiting agent got the operator's answer
        "every close gate is met",
        "Status: closed",
        "no dead letters",
    ):
        assert shown in transcript, (shown, transcript[-6000:])

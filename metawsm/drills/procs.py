"""Child processes of a drill: ``python -m metawsm ...`` in a process group of its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from metawsm.settings import ENV_PREFIX, Settings

STOP_TIMEOUT_S = 10.0


def environment(settings: Settings, workdir: Path) -> dict[str, str]:
    """The environment of a child that must see exactly ``settings`` (as ``METAWSM_*``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    for name, value in settings.as_dict().items():
        if value is not None:  # an unset optional setting stays unset (not the string "None")
            env[f"{ENV_PREFIX}{name.upper()}"] = str(value)
    tmp = workdir / "tmp"  # the worker supervisor's slot file lives in TMPDIR
    tmp.mkdir(parents=True, exist_ok=True)
    env["TMPDIR"] = str(tmp)
    return env


@dataclass
class Child:
    """One ``metawsm`` child process (its own session and group), its output in a log file."""

    name: str
    args: list[str]
    settings: Settings
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def log_path(self) -> Path:
        """Where the child's stdout and stderr go (appended across restarts)."""
        return self.workdir / f"{self.name}.log"

    @property
    def pid(self) -> int | None:
        """The running process's id, None when it is not running."""
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def start(self) -> None:
        """Start (or start again) ``python -m metawsm ARGS`` in the work directory."""
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "metawsm", *self.args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment(self.settings, self.workdir),
                cwd=self.workdir,  # beat's schedule file and no stray .env from the caller
                start_new_session=True,  # a Ctrl-C at the terminal is ours to pass on
            )
        self.starts += 1

    def kill(self) -> None:
        """SIGKILL the main process only (what the OOM killer or ``kill -9`` does)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def pause(self) -> None:
        """SIGSTOP the whole process group (a frozen host, a stuck consumer)."""
        self._signal_group(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT the whole process group."""
        self._signal_group(signal.SIGCONT)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM the process group, then SIGKILL whatever of it is left after ``timeout_s``."""
        if self.proc is None:
            return
        self._signal_group(signal.SIGCONT)  # a stopped process acts on SIGTERM only once it runs
        self._signal_group(signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=timeout_s)
        self._signal_group(signal.SIGKILL)  # children that outlived their parent
        self.proc.wait()

    def _signal_group(self, sig: signal.Signals) -> None:
        if self.proc is not None:
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)

    def log_tail(self, lines: int = 20) -> str:
        """The end of the child's log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def children_of(pid: int) -> list[int]:
    """Live (non-zombie) direct children of ``pid``, from ``/proc``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 1 and int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return sorted(found)


def environ_of(pid: int) -> dict[str, str]:
    """The environment ``pid`` started with (empty when it is gone or not ours)."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}

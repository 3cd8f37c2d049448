"""Every incident drill, in its short form, through the real ``metawsm drill`` command: nothing
lost, nothing applied twice, work applied; and a drill fails (exit 1) when a command is lost or
applied twice.

Each drill starts its own scratch stack (private Redis, SQLite, ``metawsm worker`` on the solo
pool, ``metawsm beat``), so these tests need nothing but the installed package; about 20-40 s
each on two cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from metawsm.settings import ENV_PREFIX

pytestmark = pytest.mark.fault

DRILLS = ["redis-outage", "redis-stall", "worker-kill", "redis-flush", "replay"]
SHORT = ["--duration", "10", "--rate", "20"]
TIMEOUT_S = 180.0  # the drill itself stays under 60 s; this only stops a hung one


def _drill(tmp_path: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env["TMPDIR"] = str(tmp_path)  # the scratch stack's directory goes here: seen removed after
    done = subprocess.run(
        [sys.executable, "-m", "metawsm", "drill", *args, "--json"],
        capture_output=True, text=True, timeout=TIMEOUT_S, cwd=tmp_path, env=env, check=False,
    )  # fmt: skip
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"no JSON report (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.returncode, report, done.stderr


@pytest.mark.parametrize("kind", DRILLS)
def test_each_drill_in_its_short_form_loses_nothing_and_applies_nothing_twice(
    tmp_path: Path, kind: str
) -> None:
    code, report, stderr = _drill(tmp_path, kind, *SHORT)
    summary = {k: report[k] for k in ("lost", "duplicated", "read_model_differences")}
    assert summary == {"lost": 0, "duplicated": 0, "read_model_differences": 0}, (report, stderr)
    assert report["ok"] is True and code == 0, (report, stderr)
    assert report["submitted"] >= 150 and report["applied"] > 0.8 * report["submitted"], report
    assert report["time_to_recover_s"] is not None, report
    assert report["fault"] and report["drill"] == kind
    # The drill cleaned up after itself.
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("defect", ["lost", "duplicated"])
def test_a_drill_fails_when_a_command_is_lost_or_applied_twice(tmp_path: Path, defect: str) -> None:
    code, report, stderr = _drill(
        tmp_path, "redis-flush", "--duration", "5", "--rate", "10", "--inject-defect", defect
    )
    assert (code, report["ok"], report[defect]) == (1, False, 1), (report, stderr)
    other = "duplicated" if defect == "lost" else "lost"
    assert report[other] == 0, report

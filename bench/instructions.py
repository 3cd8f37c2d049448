"""The snapshot's cost in CPU instructions, counted by valgrind: a figure the machine's speed
does not move.

On a shared virtual machine the wall and CPU time of one call move by half from one minute to
the next (docs/performance.md, "Session 12"); the number of instructions executed does not.
``valgrind --tool=cachegrind`` counts them (``I refs``), ~50 times slower than the real run.
For one store (a copy of a ``bench/scale_data.py`` store, at the code's migration head) it
prints, in millions of instructions:

1. the snapshot of every active run on a warm driver connection (what ``status``, ``watch``
   and ``operator`` build), per call: a process builds it 1 + 1 and then 1 + 5 times, and the
   difference is divided by 4 (start-up and the first, cold call cancel out); with every
   run's stored document up to date (stored first: services/snapshot_docs.py), and with every
   document made again (what the first snapshot after every run changed costs);
2. whole processes: ``metawsm --version``, ``status --all --json`` (into a pipe),
   ``watch --all --once``, ``operator --once --dry-run`` (start-up, imports and all), every
   document stored; ``operator --once`` when its decisions are recorded already (run once
   first, not counted: what each pass of a running operator does);
3. with ``--rebuild``, ``projections rebuild --check`` (the fold of the whole log and the
   comparison of every read model: minutes under valgrind on the 100k store).

Reads, and stores the runs' snapshot documents (a cache; on a copy of a store all the same).

    python bench/instructions.py --store /tmp/copy-of-100k.db [--pythonpath OTHER_CHECKOUT]

``--pythonpath`` measures another checkout's code (``PYTHONPATH``), for a before and after on
copies of one store (each at its code's head). Needs ``valgrind`` (Debian: ``apt-get install
valgrind``). The operator runs with ``--dry-run``, against a broker URL nothing answers on.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

SNAPSHOT = r"""
import inspect
import sys
from datetime import UTC, datetime
from metawsm.services import snapshot
from metawsm.settings import Settings
from metawsm.storage import dbapi
settings = Settings(database_url=sys.argv[1])
raw, dialect = dbapi.connect(settings)
raw.execute("PRAGMA cache_size=-65536")  # as the engine's connections (the same in any version)
db = dbapi.Reader(raw, dialect)
now = datetime(2026, 12, 7, tzinfo=UTC)  # a fixed clock: the same SLA tiers in every run
options = {}
if "fresh" in inspect.signature(snapshot.read).parameters:  # documents stored (migration 0010)
    if sys.argv[3] == "store":  # not counted: run before, so both counted runs find them
        from metawsm.services.snapshot_docs import keep
        fresh = []
        snapshot.read(db, settings, now=now, fresh=fresh)
        keep(raw, dialect, fresh)
        raise SystemExit(0)
    options = {"stored": sys.argv[3] == "stored"}
raw.execute("BEGIN")
for _ in range(1 + int(sys.argv[2])):  # the first call reads the pages: not counted
    snapshot.read(db, settings, now=now, **options)
"""
SNAPSHOTS = {  # how: label (code without stored documents measures the same call twice)
    "stored": "snapshot of every active run, per call",
    "made": "same, every run's document made again",
}
PROCESSES = {
    "metawsm --version": ["--version"],
    "status --all --json": ["status", "--all", "--json"],
    "watch --all --once": ["watch", "--all", "--once"],
    "operator --once --dry-run": ["operator", "--once", "--dry-run"],
    "operator --once, decisions recorded": ["operator", "--once"],
}
REBUILD = {"projections rebuild --check": ["projections", "rebuild", "--check", "--json"]}
REFS = re.compile(r"I\s+refs:\s+([\d,]+)")
NOBODY = "redis://127.0.0.1:1/0"  # a broker nothing answers on: nothing leaves the process


def instructions(argv: list[str], env: dict[str, str]) -> int:
    """Instructions the command executed, counted by cachegrind (no cache simulation)."""
    done = subprocess.run(
        ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
         *argv],
        env=env, cwd="/tmp", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        check=False,
    )  # fmt: skip
    found = REFS.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"{' '.join(argv)} failed under valgrind:\n{done.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def measure(store: Path, pythonpath: str | None, rebuild: bool = False) -> dict[str, float]:
    """Millions of instructions: the snapshot per call, then each process."""
    env = dict(os.environ, METAWSM_DATABASE_URL=f"sqlite:///{store}", METAWSM_BROKER_URL=NOBODY)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    python = sys.executable
    url = env["METAWSM_DATABASE_URL"]
    # Every run's document stored first, by a process of its own: the counted runs must do
    # the same work (one that made and stored them would count that in one run but not the
    # other, and the difference would be wrong).
    subprocess.run([python, "-c", SNAPSHOT, url, "0", "store"], env=env, cwd="/tmp", check=True)
    out = {}
    for how, label in SNAPSHOTS.items():
        one = instructions([python, "-c", SNAPSHOT, url, "1", how], env)
        five = instructions([python, "-c", SNAPSHOT, url, "5", how], env)
        out[label] = (five - one) / 4 / 1e6
    # The operator's decisions recorded before it is counted (the run's output is not read).
    subprocess.run([python, "-m", "metawsm", "operator", "--once"], env=env, cwd="/tmp",
                   capture_output=True, check=True)  # fmt: skip
    for name, args in (PROCESSES | (REBUILD if rebuild else {})).items():
        out[name] = instructions([python, "-m", "metawsm", *args], env) / 1e6
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, required=True, help="a SQLite store (a copy)")
    parser.add_argument("--pythonpath", help="measure the code of this checkout instead")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument("--rebuild", action="store_true", help="also `projections rebuild --check`")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    figures = measure(args.store, args.pythonpath, args.rebuild)
    for name, millions in figures.items():
        print(f"{name:42} {millions:8.1f} M instructions")
    if args.json:
        print(json.dumps({k: round(v, 1) for k, v in figures.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

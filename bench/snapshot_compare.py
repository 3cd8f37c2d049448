"""Write the snapshot's JSON of a store at fixed clocks, to compare two versions of the builder.

    PYTHONPATH=. python bench/snapshot_compare.py --store PATH --out DIR [--runs-alone 50]
    cmp -s DIR_A/FILE DIR_B/FILE   # or: python bench/snapshot_compare.py --diff DIR_A DIR_B

For each clock (10 minutes, 70 minutes and 26 days after the store's newest event: SLA
candidates none or some, then all due) it writes, as compact JSON with sorted keys, ``to_json``
of: every active run (the clocks count from the newest event that is not an operator's
decision); every active and completed run (what the operator reads); the first
``--runs-alone`` active runs each read alone (by ``run_id``); and the runs of one ticket; and
the bytes ``status --all --json`` writes into a pipe (``*-status-json.json``: from the runs'
documents since session 14, from the typed snapshot before). Run it
with one version of the code, then another (``PYTHONPATH=/other/checkout``), on the same store
(it only reads: a copy is not needed), and compare the directories with ``--diff``: every file
must be identical (docs/performance.md, "Snapshot at scale").
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

from metawsm.domain.snapshot import to_json
from metawsm.services import snapshot
from metawsm.settings import Settings, load_settings
from metawsm.storage.engine import build_engine
from metawsm.storage.types import utcnow

CLOCKS = {"10min": timedelta(minutes=10), "70min": timedelta(minutes=70),
          "26days": timedelta(days=26)}  # fmt: skip


# The operator's decisions are left out: they are recorded at the real time of a pass, and
# two copies of one store measured by two versions hold different ones.
NEWEST = "SELECT max(occurred_at) FROM forum_events WHERE event_type != 'operator.decision'"


def newest_event(settings: Settings) -> datetime:
    """When the store's newest event happened (aware UTC), or now for an empty store."""
    engine = build_engine(settings)
    try:
        with engine.connect() as conn:
            newest = conn.execute(text(NEWEST)).scalar()
    finally:
        engine.dispose()
    if newest is None:
        return utcnow()
    moment = newest if isinstance(newest, datetime) else datetime.fromisoformat(str(newest))
    return moment if moment.tzinfo else moment.replace(tzinfo=utcnow().tzinfo)


def documents(settings: Settings, now: datetime, runs_alone: int) -> dict[str, Any]:
    """The documents to compare at ``now``: name -> JSON data."""
    engine = build_engine(settings)
    try:
        every = snapshot.build(engine, settings, now=now)
        docs: dict[str, Any] = {"all": to_json(every)}
        docs["with_completed"] = to_json(snapshot.build(engine, settings, now=now,
                                                        with_completed=True))  # fmt: skip
        docs["alone"] = [
            to_json(snapshot.build(engine, settings, run_id=r.run_id, now=now))
            for r in every.runs[:runs_alone]
        ]
        tickets = [t for r in every.runs for t in r.tickets]
        if tickets:
            docs["ticket"] = to_json(snapshot.build(engine, settings, ticket=tickets[0], now=now))
        return docs
    finally:
        engine.dispose()


def status_json(settings: Settings, now: datetime) -> bytes:
    """What ``status --all --json`` writes into a pipe at ``now``: from the runs' documents
    where the code makes it so (services/snapshot.py ``read_documents``), else from the typed
    snapshot (cli/snapshot_json.py)."""
    from metawsm.cli import snapshot_json
    from metawsm.storage import dbapi

    raw, dialect = dbapi.connect(settings)
    try:
        db = dbapi.Reader(raw, dialect)
        if not hasattr(snapshot, "read_documents"):  # an earlier version
            return snapshot_json.compact_snapshot(snapshot.read(db, settings, now=now))
        from metawsm.services.snapshot_parts import Clock

        runs = snapshot.read_documents(db)
        return snapshot_json.encode_compact(
            snapshot_json.compact_document_from(runs, Clock(settings, now))
        )
    finally:
        raw.close()


def write(store: Path, out: Path, runs_alone: int) -> None:
    """Write every document of every clock under ``out``."""
    settings = load_settings(database_url=f"sqlite:///{store}")
    base = newest_event(settings)
    out.mkdir(parents=True, exist_ok=True)
    for label, after in CLOCKS.items():
        for name, data in documents(settings, base + after, runs_alone).items():
            path = out / f"{label}-{name}.json"
            path.write_text(json.dumps(data, sort_keys=True, separators=(",", ":")))
            print(f"{path}: {path.stat().st_size} bytes")
        path = out / f"{label}-status-json.json"
        path.write_bytes(status_json(settings, base + after))
        print(f"{path}: {path.stat().st_size} bytes")


def diff(first: Path, second: Path) -> int:
    """0 when both directories hold the same files with the same bytes, else 1 (says which)."""
    names = sorted({p.name for p in first.iterdir()} | {p.name for p in second.iterdir()})
    differ = [n for n in names if not ((first / n).exists() and (second / n).exists()
              and (first / n).read_bytes() == (second / n).read_bytes())]  # fmt: skip
    for name in names:
        print(f"{'DIFFERENT' if name in differ else 'identical'}  {name}")
    return 1 if differ or not names else 0


def main() -> None:
    """Write the documents, or compare two directories of them."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--store", type=Path, help="the SQLite store to read (at the code's head)")
    p.add_argument("--out", type=Path, help="where to write the documents")
    p.add_argument("--runs-alone", type=int, default=50)
    p.add_argument("--diff", nargs=2, type=Path, metavar=("DIR_A", "DIR_B"))
    a = p.parse_args()
    if a.diff:
        sys.exit(diff(*a.diff))
    if not (a.store and a.out):
        p.error("--store and --out (or --diff)")
    write(a.store, a.out, a.runs_alone)


if __name__ == "__main__":
    main()

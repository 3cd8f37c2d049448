"""Reads at scale: issue 12's table, on the cached 1k / 10k / 100k-thread stores.

    python bench/scale.py [--sizes 1k,10k,100k] [--database sqlite|postgresql://...]
        [--repeat 5] [--stack] [--no-build] [--only ROW[,ROW...]] [--json]

For each size it takes the cached store of bench/scale_data.py (building it first when missing,
unless ``--no-build``), works on a COPY (a file copy, or ``CREATE DATABASE ... TEMPLATE``),
brings the copy to the code's migration head with ``metawsm db upgrade``, and measures every
row twice: as a CLI process (wall time, median of up to ``--repeat``) and, where a service
function answers the same question, in-process on a warm engine (median, with the number of SQL
statements). The runs rows are measured with all 1,000 runs active, then on the same copy with
all but 100 stopped (``lifecycle.stop_run``, the product's `run stop`), then all but 10.
``--stack`` also starts Redis and a commands and an events worker on the copy and times
``forum ask`` (process start → applied). Each cell shows the median (p50) wall time, the p99,
the best, the samples and the median CPU time, and ✓/✗ of the median against the target;
in-process cells also the SQL statements (through SQLAlchemy and straight on the driver).

Every process it starts gets a private redis-server on a free port as its broker
(``METAWSM_BROKER_URL``; ``operator --once`` publishes its decisions): the machine's Redis on
6379 is never touched. ``--only`` measures a subset of rows (keys or groups, see ``--help``).

The table (Markdown) goes to stdout, or to stderr with ``--json`` (one JSON object on stdout).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/scale.py`

from bench import scale_data
from bench.scale_measure import (
    Sample,
    children_cpu_s,
    cli_prefix,
    copy_sqlite,
    cpu_jiffies,
    loadavg,
    loadavgs,
    run_inprocess,
    run_process,
    steal_pct,
)
from bench.scale_pipeline import Pipeline, SimClock
from bench.scale_rows import VERSION_ROW, Row, read_rows, snapshot_rows
from bench.scale_stack import ask_latency
from bench.scale_table import render_table
from metawsm.messages.common import Actor
from metawsm.settings import Settings, load_settings
from metawsm.storage.engine import build_engine
from metawsm.storage.types import utcnow
from metawsm.transport.redis_server import RedisServer

log = scale_data.log
Results = dict[str, Any]  # row key -> {"label", "process", "inprocess", ...} or a Sample


# ------------------------------------------------------------------------------ work copies


@contextmanager
def working_copy(store: scale_data.Store, database: str) -> Iterator[str]:
    """A throw-away copy of ``store`` (file or database), at the code's migration head."""
    if database == "sqlite":
        source = Path(store.url.removeprefix("sqlite:///"))
        with tempfile.TemporaryDirectory(prefix="work-", dir=source.parent) as tmp:
            target = Path(tmp) / source.name
            copy_sqlite(source, target)
            url = f"sqlite:///{target}"
            scale_data.upgrade_to_head(url)
            yield url
        return
    admin = scale_data.admin_engine(database)
    name = f"metawsm_scale_work_{store.size}_{os.getpid()}"
    source_name = store.url.rsplit("/", 1)[1]
    try:
        scale_data.drop_database(admin, name)
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{source_name}"')
        url = scale_data.database_url(database, name)
        scale_data.upgrade_to_head(url)
        scale_data.analyze(url)
        yield url
    finally:
        scale_data.drop_database(admin, name)
        admin.dispose()


def keep_active(settings: Settings, runs: list[str]) -> None:
    """Stop ``runs`` through the product (`run stop`), delivering their events."""
    from metawsm.services.lifecycle import stop_run

    pipeline = Pipeline(build_engine(settings), settings, SimClock(utcnow(), 0.001))
    actor = Actor(type="operator", name="scale-bench")
    try:
        for run_id in runs:
            stop_run(pipeline.rt, run_id, actor)
            pipeline.drain()
    finally:
        pipeline.rt.engine.dispose()


def active_runs(settings: Settings) -> list[str]:
    """Ids of the active runs, sorted."""
    from sqlalchemy import select

    from metawsm.domain.runs import ACTIVE
    from metawsm.storage.models import Run

    engine = build_engine(settings)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(Run.run_id).where(Run.status.in_([s.value for s in ACTIVE])))
            return sorted(r[0] for r in rows)
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------------- measuring


class Session:
    """Measures the rows of one size on one working copy."""

    def __init__(self, url: str, args: argparse.Namespace) -> None:
        self.settings = load_settings(database_url=url, broker_url=args.broker_url)
        self.env = {"METAWSM_DATABASE_URL": url, "METAWSM_BROKER_URL": args.broker_url}
        self.args = args
        self.results: Results = {}

    def wants(self, key: str) -> bool:
        """Whether the row (or result) ``key`` is to be measured."""
        return key in self.args.selected

    def measure(self, row: Row) -> None:
        """Run ``row`` as a process and in-process (when it is selected); keep the samples."""
        if not self.wants(row.key):
            return
        out: dict[str, Any] = {"label": row.label}
        if row.cli is not None:  # else an in-process measure only
            out["process"] = run_process(row.cli, self.env, self.args.repeat)
        if row.inprocess is not None:
            engine = build_engine(self.settings)
            call = row.inprocess
            try:
                out["inprocess"] = run_inprocess(
                    engine, lambda: call(engine, self.settings), self.args.repeat
                )
            finally:
                engine.dispose()
        self.results[row.key] = out
        log(f"  {row.label}: {_brief(out)}")

    def rebuild(self, events: int) -> None:
        """`projections rebuild --check`, then `projections rebuild`: events/s of each."""
        for key, extra in (("rebuild_check", ["--check"]), ("rebuild", [])):
            if not self.wants(key):
                continue
            args = ["projections", "rebuild", *extra, "--json"]
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            done = subprocess.run(
                [*cli_prefix(), *args], env={**os.environ, **self.env}, capture_output=True
            )
            wall = time.perf_counter() - start
            cpu = children_cpu_s(before, resource.getrusage(resource.RUSAGE_CHILDREN))
            out: dict[str, Any] = {"label": f"`projections {' '.join(args[1:-1])}`".strip()}
            out["wall_s"], out["exit"] = round(wall, 2), done.returncode
            out["cpu_s"] = round(cpu, 2)
            out["events_per_s"] = round(events / wall, 1)
            if done.returncode != 0:
                out["error"] = done.stderr.decode(errors="replace").strip()[-300:]
            else:  # the rebuild's own time, as the command reports it (no process start)
                own = float(json.loads(done.stdout)["seconds"])
                out["rebuild_s"] = own
                out["rebuild_events_per_s"] = round(events / max(own, 1e-9), 1)
            self.results[key] = out
            own_rate = out.get("rebuild_events_per_s", 0)
            log(f"  {out['label']}: {own_rate:.0f} events/s by its report,"
                f" {out['events_per_s']:.0f} as a process (exit {done.returncode})")  # fmt: skip


def _brief(out: dict[str, Any]) -> str:
    parts = []
    for kind in ("process", "inprocess"):
        sample: Sample | None = out.get(kind)
        if sample is not None:
            value = sample.error or f"{(sample.median_s or 0) * 1000:.1f} ms"
            parts.append(f"{kind} {value}")
    return ", ".join(parts)


def measure_size(size: str, args: argparse.Namespace) -> Results:
    """Every row on the store of ``size`` (see the module docstring for the order)."""
    store = scale_data.store(args.database, size, build=not args.no_build)
    facts = store.manifest["facts"]
    load_start, cpu_start = loadavgs(), cpu_jiffies()
    log(f"{size}: {store.manifest['counts']['events']} events; load {load_start}")
    with working_copy(store, args.database) as url:
        session = Session(url, args)
        thread_paging = b"--limit" in _help(["forum", "thread"])
        for row in read_rows(facts["search_word"], facts["big_threads"], thread_paging):
            session.measure(row)
        session.rebuild(store.manifest["counts"]["events"])
        measure_runs(session, facts["run_ids_sample"][0])
        if session.wants("forum_ask"):
            session.results["forum_ask"] = ask_latency(url, args.repeat * 4)
        session.results["load"] = {"start": load_start, "end": loadavgs()}
        session.results["steal_pct"] = steal_pct(cpu_start, cpu_jiffies())
        log(f"{size}: done; load {loadavgs()}, CPU stolen {session.results['steal_pct']} %")
        return session.results


def measure_runs(session: Session, one: str) -> None:
    """The run rows with 1,000 active runs, then 100, then 10 (stopping the others on the
    copy); ``one`` stays active throughout and is the run of the one-run row."""
    ordered = [one, *(r for r in active_runs(session.settings) if r != one)]
    for active in (1000, 100, 10):
        rows = snapshot_rows(active, active, one if active == 1000 else None)
        if not any(session.wants(row.key) for row in rows):
            continue
        keep = set(ordered[:active])
        keep_active(session.settings, [r for r in active_runs(session.settings) if r not in keep])
        count = len(active_runs(session.settings))
        for row in snapshot_rows(active, count, one if active == 1000 else None):
            session.measure(row)


def _help(args: list[str]) -> bytes:
    return subprocess.run([*cli_prefix(), *args, "--help"], capture_output=True).stdout


# -------------------------------------------------------------------------------------- main


GROUPS = {
    "reads": [r.key for r in read_rows("w", {"1000": "", "10000": ""}, True)],
    "rebuild": ["rebuild", "rebuild_check"],
    "runs": [r.key for r in snapshot_rows(1000, 1000, "x")],
    "fewer-runs": [r.key for n in (100, 10) for r in snapshot_rows(n, n, None)],
    "version": ["version"],
    "stack": ["forum_ask"],
}
SKIPPABLE = ("reads", "rebuild", "runs", "fewer-runs")
ROW_KEYS = [key for keys in GROUPS.values() for key in keys]


def selected_rows(only: list[str], skip: list[str], stack: bool) -> set[str]:
    """The row keys to measure: ``--only`` (keys or groups; all rows but the stack's when
    empty), less the ``--skip`` groups; ``--stack`` adds ``forum_ask``.

    Raises:
        SystemExit: an ``--only`` name is neither a row key nor a group.
    """
    names = [n for item in only for n in item.split(",") if n]
    chosen: set[str] = set()
    for name in names:
        if name in GROUPS:
            chosen.update(GROUPS[name])
        elif name in ROW_KEYS:
            chosen.add(name)
        else:
            known = ", ".join([*GROUPS, *ROW_KEYS])
            raise SystemExit(f"--only: {name!r} is not a row or group; one of: {known}")
    if not names:
        chosen = set(ROW_KEYS) - {"forum_ask"}
    if stack:
        chosen.add("forum_ask")
    for group in skip:
        chosen -= set(GROUPS[group])
    return chosen


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description="Reads at scale: issue 12's table.")
    p.add_argument("--sizes", default="1k,10k", help="comma-separated of 1k, 10k, 100k (1k,10k)")
    p.add_argument("--database", default="sqlite", help="sqlite, or a postgresql:// server URL")
    p.add_argument("--repeat", type=int, default=5, help="samples per row, at most (5)")
    p.add_argument("--stack", action="store_true", help="also time forum ask on a running stack")
    p.add_argument("--no-build", action="store_true", help="skip sizes that are not cached")
    p.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=SKIPPABLE,
        help="leave out a group of rows (repeatable): reads, rebuild, runs (the 1,000-run rows),"
        " fewer-runs (the 100 and 10 active-run rows)",
    )
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="ROW[,ROW...]",
        help="measure only these rows (repeatable; row keys or groups): groups "
        + ", ".join(GROUPS)
        + "; rows "
        + ", ".join(ROW_KEYS),
    )
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument(
        "--render",
        nargs="+",
        metavar="JSON",
        help="measure nothing: print the table of saved --json outputs (their sizes merged)",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure every asked size; print the table (and the JSON)."""
    args = parse_args(argv)
    if args.render:
        print(render_saved([Path(p) for p in args.render]))
        return 0
    sizes = args.sizes.split(",")
    for size in sizes:
        if size not in scale_data.SIZES:
            raise SystemExit(f"--sizes: {size!r} is not one of {', '.join(scale_data.SIZES)}")
    args.selected = selected_rows(args.only, args.skip, args.stack)
    load_start = loadavg()
    version: Sample | None = None
    if "version" in args.selected:
        version = run_process(VERSION_ROW.cli or [], {}, max(args.repeat, 10))
    per_size: dict[str, Results] = {}
    with (
        tempfile.TemporaryDirectory(prefix="metawsm-scale-redis-") as tmp,
        RedisServer(dir=Path(tmp)) as redis,
    ):
        args.broker_url = redis.url  # operator --once publishes: never the machine's Redis
        for size in sizes:
            try:
                per_size[size] = measure_size(size, args)
            except scale_data.NotCached as exc:
                log(f"{size}: skipped ({exc})")
    dialect = "sqlite" if args.database == "sqlite" else "postgresql"
    table = render_table(dialect, version, per_size)
    print(table, file=sys.stderr if args.json else sys.stdout)
    if args.json:
        report = {
            "dialect": dialect,
            "loadavg": {"start": load_start, "end": loadavg()},
            "cpus": os.cpu_count(),
            "version": version.as_dict() if version else None,
            "sizes": _plain(per_size),
        }
        print(json.dumps(report, default=str))
    return 0


def render_saved(paths: list[Path]) -> str:
    """The table of saved ``--json`` reports of one dialect, their sizes side by side."""
    reports = [json.loads(p.read_text()) for p in paths]
    per_size: dict[str, Results] = {}
    for report in reports:
        for size, results in report["sizes"].items():
            per_size[size] = {key: _revived(out) for key, out in results.items()}
    order = [s for s in scale_data.SIZES if s in per_size]
    saved = next((r["version"] for r in reports if r.get("version")), None)
    version = Sample.from_dict(saved) if saved else None
    return render_table(reports[0]["dialect"], version, {s: per_size[s] for s in order})


def _revived(out: Any) -> Any:
    if isinstance(out, dict) and "times_ms" in out:
        return Sample.from_dict(out)
    if isinstance(out, dict):
        return {k: _revived(v) for k, v in out.items()}
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, Sample):
        return value.as_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted: working copies removed")
        sys.exit(130)

"""The command line's import budget: what each kind of command may not import.

Every agent signal and every read is a new ``metawsm`` process, so what it imports is most of
what it costs (docs/performance.md, "Command-line start-up"). Each test runs a real command in a
subprocess under ``python -X importtime`` — against a real migrated SQLite database where it
needs one, and a broker URL nothing listens on for writes (the command is accepted and durable;
the publish fails at once) — and fails naming every module of a package on the command's
forbidden list. A list, not a timing: timed tests are not reliable on a shared machine;
``bench/cli_start.py`` prints the times.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import metawsm
from tests.fixtures.database import NO_BROKER_URL

# The metawsm under test (this checkout), whatever the subprocess's working directory.
SOURCE_ROOT = str(Path(metawsm.__file__).resolve().parents[1])

# Migrations and their template engine: ``metawsm db`` and ``metawsm up`` only.
MIGRATIONS = ("alembic", "mako", "pygments")
# The broker libraries: workers only (writes publish through metawsm/transport/resp.py);
# Celery: worker, beat and flower only.
BROKER = ("kombu", "redis", "amqp", "vine")
CELERY = ("celery",)
# The database layer: commands that read or write.
DATABASE = ("sqlalchemy", "psycopg")
# Validation libraries: the settings parse their own values (metawsm/settings_rules.py); a
# write checks its command without them (metawsm/messages/plain.py) unless the input is invalid;
# the snapshot uses pydantic. dotenv: only when a .env exists.
VALIDATION = ("pydantic", "pydantic_settings", "pydantic_core", "dotenv")
# The HTTP server: ``metawsm api`` only.
HTTP = ("fastapi", "starlette", "uvicorn", "anyio", "httpx")

ASK = ["forum", "ask", "--ticket", "T-1", "--title", "t", "--body", "b", "--no-wait"]
SIGNAL = ["forum", "signal", "--run-id", "r", "--agent-name", "a", "--type", "completion"]
SIGNAL += ["--summary", "done", "--no-wait"]

NOTHING = (*MIGRATIONS, *BROKER, *CELERY, *DATABASE, *VALIDATION, *HTTP)
# Reads through the driver (storage/dbapi.py): no SQLAlchemy, no models, no pydantic.
DIRECT_READ = (*MIGRATIONS, *BROKER, *CELERY, "sqlalchemy", *VALIDATION, *HTTP)
# What no read imports (the snapshot's reads are direct reads too: status, watch --once and
# an operator pass that records nothing).
READ = (*MIGRATIONS, *BROKER, *CELERY, "pydantic_settings", *HTTP)
# Writes: the driver to accept, the minimal Redis client to publish; SQLAlchemy only when the
# publish failed (putting the row back for the drainer: WRITE_NO_BROKER), never redis-py, kombu,
# Celery or pydantic (but to explain invalid input: INVALID_WRITE).
WRITE = (*MIGRATIONS, *CELERY, *BROKER, "sqlalchemy", *VALIDATION, *HTTP)
WRITE_NO_BROKER = tuple(name for name in WRITE if name != "sqlalchemy")
# The snapshot's reads (agents poll them) also without urllib.parse and pathlib (~18 M
# instructions: URLs are checked by metawsm/url_parts.py, the default database found on strings).
SNAPSHOT_READ = (*DIRECT_READ, "urllib", "pathlib")
# A rebuild reads and writes through SQLAlchemy Core, but its fold needs no message model
# (~40 ms of pydantic at every start: docs/performance.md, "Session 15"), and its statements
# are written on the Core tables (metawsm/storage/tables.py): neither the ORM nor the classes
# mapped onto them (~0.1 s: "Session 16").
REBUILD = (*MIGRATIONS, *BROKER, *CELERY, *VALIDATION, *HTTP, "sqlalchemy.orm")
REBUILD += ("metawsm.storage.models",)


def imported_modules(
    args: list[str], env: dict[str, str], cwd: Path, exit_code: int = 0
) -> list[str]:
    """Every module ``metawsm ARGS`` imports, in order (``python -X importtime``); the command
    must exit with ``exit_code`` (1: a read of a record that does not exist)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "metawsm", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=60,
    )
    assert result.returncode == exit_code, result.stderr[-2000:]
    return [
        line.split("|")[2].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and line.count("|") == 2 and "self [us]" not in line
    ]


def forbidden_in(modules: list[str], forbidden: tuple[str, ...]) -> list[str]:
    """The modules of ``modules`` that are, or are inside, a package or module of ``forbidden``."""
    return [
        name
        for name in modules
        if any(name == banned or name.startswith(f"{banned}.") for banned in forbidden)
    ]


@pytest.fixture
def env(sqlite_url: str, tmp_path: Path) -> dict[str, str]:
    """The environment of a user with a migrated database and no Redis answering."""
    path = [SOURCE_ROOT, *filter(None, [os.environ.get("PYTHONPATH")])]
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(path),
        "METAWSM_DATABASE_URL": sqlite_url,
        "METAWSM_BROKER_URL": NO_BROKER_URL,
        "METAWSM_PUBLISH_BREAKER_S": "0",
        "HOME": str(tmp_path),
    }


BUDGETS = [
    (["--help"], NOTHING),
    (["forum", "--help"], (*READ, *DATABASE, *VALIDATION)),
    (["config", "show", "--json"], (*READ, *DATABASE, *VALIDATION)),
    (["forum", "list", "--json"], DIRECT_READ),
    (["forum", "search", "--query", "word", "--json"], DIRECT_READ),
    (["forum", "search", "--queue", "unanswered", "--json"], DIRECT_READ),
    (["forum", "thread", "--thread-id", "nope", "--json"], DIRECT_READ),
    (["forum", "events", "--json"], DIRECT_READ),
    (["run", "list", "--json"], DIRECT_READ),
    (["run", "show", "--run-id", "nope", "--json"], DIRECT_READ),
    (["dlq", "list", "--json"], DIRECT_READ),
    (["dlq", "show", "nope", "--json"], DIRECT_READ),
    (["status", "--json"], SNAPSHOT_READ),
    (["status", "--all"], SNAPSHOT_READ),
    (["watch", "--all", "--once"], SNAPSHOT_READ),
    (["operator", "--once", "--dry-run"], SNAPSHOT_READ),
    (["operator", "--once"], SNAPSHOT_READ),
    (ASK, WRITE_NO_BROKER),
    (SIGNAL, WRITE_NO_BROKER),
    (["projections", "rebuild", "--check", "--json"], REBUILD),
    (["projections", "rebuild", "--json"], REBUILD),
]


@pytest.mark.parametrize(
    ("args", "forbidden"), [pytest.param(*budget, id=" ".join(budget[0])) for budget in BUDGETS]
)
def test_a_command_imports_nothing_on_its_forbidden_list(
    args: list[str], forbidden: tuple[str, ...], env: dict[str, str], tmp_path: Path
) -> None:
    missing = any(arg == "nope" for arg in args)  # reads of a missing record: exit 1
    modules = imported_modules(args, env, tmp_path, exit_code=1 if missing else 0)
    assert "metawsm.cli" in modules
    assert forbidden_in(modules, forbidden) == []


def test_version_is_answered_before_click_and_prints_what_clicks_option_prints(
    env: dict[str, str], tmp_path: Path
) -> None:
    modules = imported_modules(["--version"], env, tmp_path)
    assert "metawsm.entry" in modules
    assert [m for m in modules if m == "click" or m.startswith(("click.", "metawsm.cli"))] == []
    assert forbidden_in(modules, (*NOTHING, "typing")) == []
    import metawsm

    process = subprocess.run(
        [sys.executable, "-m", "metawsm", "--version"],
        env=env, cwd=tmp_path, capture_output=True, text=True, check=True,
    )  # fmt: skip
    # The line click's version option prints for the program metawsm (its "%(prog)s, version
    # %(version)s"); CliRunner names the program after the command object, so it is written out.
    assert process.stdout == f"metawsm, version {metawsm.__version__}\n"


@pytest.mark.parametrize("args", [ASK, SIGNAL], ids=["forum ask", "forum signal"])
def test_a_write_that_publishes_imports_no_sqlalchemy_redis_py_kombu_or_celery(
    args: list[str], env: dict[str, str], tmp_path: Path, redis_url: str
) -> None:
    modules = imported_modules(args, {**env, "METAWSM_BROKER_URL": redis_url}, tmp_path)
    assert forbidden_in(modules, WRITE) == []
    # It did reach the driver, the checks and the publisher, so the budget sees real imports.
    assert {"sqlite3", "metawsm.messages.plain", "metawsm.transport.resp"} <= set(modules)


def test_a_write_with_invalid_input_is_explained_by_the_models(
    env: dict[str, str], tmp_path: Path
) -> None:
    invalid = [arg if arg != "T-1" else " " for arg in ASK]
    modules = imported_modules(invalid, env, tmp_path, exit_code=2)
    assert "pydantic" in modules
    assert forbidden_in(modules, (*MIGRATIONS, *CELERY, *BROKER, "sqlalchemy")) == []


def test_a_write_whose_publish_fails_hands_its_row_to_the_drainer_through_sqlalchemy(
    env: dict[str, str], tmp_path: Path
) -> None:
    modules = imported_modules(ASK, env, tmp_path)
    assert "sqlalchemy" in {name.split(".")[0] for name in modules}


# API mode (METAWSM_API_URL, METAWSM_TOKEN): the standard library's http.client only; no
# database driver at all, no validation library, no HTTP library (cli/remote.py).
API_MODE = (*MIGRATIONS, *BROKER, *CELERY, *DATABASE, *VALIDATION, *HTTP, "sqlite3")
API_BUDGETS = [
    (["forum", "list", "--json"], 0),
    (["forum", "thread", "--thread-id", "nope", "--json"], 1),
    (["forum", "events", "--json"], 0),
    ([*ASK, "--json"], 0),
    (SIGNAL, 0),  # accepted (--no-wait): the API answers 202
    (["dlq", "list", "--json"], 0),
    (["run", "why", "--run-id", "nope", "--json"], 1),
    (["command", "show", "nope", "--json"], 1),  # 404: exit 1 as locally
    (["run", "show", "--run-id", "nope", "--json"], 1),
    (
        [
            "run",
            "create",
            "--mode",
            "bootstrap",
            "--ticket",
            "T-1",
            "--agent",
            "a",
            "--goal",
            "g",
            "--scope",
            "s",
            "--done-criteria",
            "d",
            "--constraints",
            "c",
            "--json",
        ],
        0,
    ),
    (["run", "agent-status", "--run-id", "nope", "--agent-name", "a", "--status", "idle"], 1),
    (["forum", "seen", "--thread-id", "nope", "--viewer-type", "human", "--viewer-id", "root"], 1),
    (["dlq", "purge", "--all", "--json"], 0),
]


@pytest.fixture
def api_env(sqlite_url: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a host with only an API's URL and an operator's token: the API
    serves a migrated database with no broker answering (writes are accepted, durable)."""
    from metawsm.bootstrap import build
    from tests.fixtures.api import issue_token, serving
    from tests.fixtures.database import settings_for

    container = build(settings_for(sqlite_url, publish_breaker_s=0))
    token = issue_token(container.engine, "operator", "root")
    with serving(container) as (url, _):
        yield {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": SOURCE_ROOT,
            "HOME": str(tmp_path),
            "METAWSM_API_URL": url,
            "METAWSM_TOKEN": token,
        }
    container.engine.dispose()


@pytest.mark.parametrize(
    ("args", "exit_code"), [pytest.param(*b, id=" ".join(b[0])) for b in API_BUDGETS]
)
def test_a_command_in_api_mode_imports_no_database_driver_validation_or_http_library(
    args: list[str], exit_code: int, api_env: dict[str, str], tmp_path: Path
) -> None:
    modules = imported_modules(args, api_env, tmp_path, exit_code=exit_code)
    assert {"metawsm.cli.remote", "http.client"} <= set(modules)
    assert forbidden_in(modules, API_MODE) == []


def test_the_forbidden_list_catches_a_module_and_what_is_inside_it_only() -> None:
    modules = ["sqlalchemy", "sqlalchemy.orm", "sqlalchemy.orm.session", "sqlalchemy.orman"]
    assert forbidden_in(modules, ("sqlalchemy.orm",)) == [
        "sqlalchemy.orm",
        "sqlalchemy.orm.session",
    ]


def test_the_forbidden_list_catches_a_module_inside_a_package() -> None:
    modules = ["click", "alembic.runtime.migration", "metawsm.cli", "celeryish"]
    assert forbidden_in(modules, ("alembic", "celery")) == ["alembic.runtime.migration"]

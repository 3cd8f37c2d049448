"""Which database a command uses when METAWSM_DATABASE_URL does not say: found as git finds its
repository.

From the current directory up to the root, the first directory whose ``.metawsm/metawsm.db``
exists holds the database; with none, it is ``.metawsm/metawsm.db`` of the current directory,
which only ``metawsm db upgrade`` and ``metawsm up`` create (a read or a write there says no
database exists, naming where it looked). A ``.metawsm/`` without ``metawsm.db`` (an agent's
workspace with legacy signal files) is passed by. ``metawsm config show`` prints the
explanation (:func:`database_origin`).

Nothing here imports a library: every command computes the default.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

DIRECTORY = ".metawsm"
FILE = "metawsm.db"
URL_VARIABLE = "METAWSM_DATABASE_URL"


class Found(NamedTuple):
    """The default database file and how it was chosen (``found``: it exists)."""

    path: Path
    found: bool
    start: Path

    @property
    def url(self) -> str:
        """The SQLite URL of :attr:`path`."""
        return f"sqlite:///{self.path}"

    def reason(self) -> str:
        """Why this file, in words."""
        if self.found:
            return f"the nearest {DIRECTORY}/{FILE} walking up from {self.start}"
        return f"no {DIRECTORY}/{FILE} in {self.start} or any directory above it"


def find_database(start: Path | None = None) -> Found:
    """The nearest ``.metawsm/metawsm.db`` from ``start`` (the current directory) upwards."""
    here = (start or Path.cwd()).absolute()
    for directory in (here, *here.parents):
        candidate = directory / DIRECTORY / FILE
        if candidate.is_file():
            return Found(candidate, True, here)
    return Found(here / DIRECTORY / FILE, False, here)


def state_directory(database_url: str, cwd: Path | None = None) -> Path:
    """Where a stack keeps its local state (the private Redis's files, beat's schedule): the
    directory of its SQLite database file, so that a stack started from a subdirectory or with
    ``METAWSM_DATABASE_URL`` keeps it beside the database it serves and finds it again; for a
    server database (or an in-memory one), ``.metawsm`` of ``cwd`` (the current directory)."""
    if database_url.startswith("sqlite") and "://" in database_url:
        path = database_url.split("://", 1)[1][1:].split("?", 1)[0]
        if path not in ("", ":memory:") and not path.startswith("file:"):
            return Path(path).absolute().parent
    return (cwd or Path.cwd()).absolute() / DIRECTORY


def database_origin(from_environment: bool, from_dotenv: bool) -> str:
    """How the database URL in force was chosen, for ``config show``."""
    if from_environment:
        return f"{URL_VARIABLE} in the environment"
    if from_dotenv:
        return f"{URL_VARIABLE} in {Path.cwd() / '.env'}"
    return find_database().reason()


def missing_sqlite_file(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL when it does not exist (None otherwise: another
    database, an in-memory one, or a file that exists)."""
    if not url.startswith("sqlite") or "://" not in url:
        return None
    path = url.split("://", 1)[1][1:].split("?", 1)[0]
    if path in ("", ":memory:") or path.startswith("file:"):
        return None
    return None if os.path.exists(path) else Path(path)


def missing_database_message(path: Path, origin: str) -> str:
    """What a command says when the SQLite file ``path`` it was given does not exist."""
    return (
        f"no metawsm database at {path} ({origin}). Run the command in or below the directory"
        " where the stack runs (./scripts/start, metawsm up), or set"
        f" {URL_VARIABLE} to the database the workers use; metawsm db upgrade creates a new,"
        " empty one here"
    )

"""Which database a command uses when METAWSM_DATABASE_URL does not say: found as git finds its
repository.

From the current directory up to the root, the first directory whose ``.metawsm/metawsm.db``
exists holds the database; with none, it is ``.metawsm/metawsm.db`` of the current directory,
which only ``metawsm db upgrade`` and ``metawsm up`` create (a read or a write there says no
database exists, naming where it looked). A ``.metawsm/`` without ``metawsm.db`` (an agent's
workspace with legacy signal files) is passed by. ``metawsm config show`` prints the
explanation (:func:`database_origin`).

Nothing here imports a library, nor ``pathlib`` on the way every command takes (it loads
``urllib.parse``: ~18 M instructions of each process): every command computes the default
(:func:`nearest_database`, on strings); a ``Path`` is made only where one is returned.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from pathlib import Path

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
    from pathlib import Path

    path, found, here = nearest_database(None if start is None else str(start))
    return Found(Path(path), found, Path(here))


def nearest_database(start: str | None = None) -> tuple[str, bool, str]:
    """:func:`find_database` as strings: the file, whether it exists, the absolute start."""
    here = os.getcwd() if start is None else os.path.join(os.getcwd(), start)
    directory = here
    while True:
        candidate = os.path.join(directory, DIRECTORY, FILE)
        if os.path.isfile(candidate):
            return candidate, True, here
        parent = os.path.dirname(directory)
        if parent == directory:  # the root: none found
            return os.path.join(here, DIRECTORY, FILE), False, here
        directory = parent


def state_directory(database_url: str, cwd: Path | None = None) -> Path:
    """Where a stack keeps its local state (the private Redis's files, beat's schedule): the
    directory of its SQLite database file, so that a stack started from a subdirectory or with
    ``METAWSM_DATABASE_URL`` keeps it beside the database it serves and finds it again; for a
    server database (or an in-memory one), ``.metawsm`` of ``cwd`` (the current directory)."""
    from pathlib import Path

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
        return f"{URL_VARIABLE} in {os.path.join(os.getcwd(), '.env')}"
    return find_database().reason()


def missing_sqlite_file(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL when it does not exist (None otherwise: another
    database, an in-memory one, or a file that exists)."""
    if not url.startswith("sqlite") or "://" not in url:
        return None
    path = url.split("://", 1)[1][1:].split("?", 1)[0]
    if path in ("", ":memory:") or path.startswith("file:"):
        return None
    if os.path.exists(path):
        return None
    from pathlib import Path

    return Path(path)


def missing_database_message(path: Path, origin: str) -> str:
    """What a command says when the SQLite file ``path`` it was given does not exist."""
    return (
        f"no metawsm database at {path} ({origin}). Run the command in or below the directory"
        " where the stack runs (./scripts/start, metawsm up), or set"
        f" {URL_VARIABLE} to the database the workers use; metawsm db upgrade creates a new,"
        " empty one here"
    )

"""The CLI's context object: settings and the composition root, built lazily on first use."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

import click

from metawsm.errors import MetawsmError, UsageError

if TYPE_CHECKING:  # loaded when first used: ``--version`` and ``--help`` need neither
    from pydantic import ValidationError

    from metawsm.bootstrap import Container
    from metawsm.cli.remote import ApiClient
    from metawsm.identity import Identity
    from metawsm.settings import Settings
    from metawsm.storage.dbapi import Reader
    from metawsm.storage.driver_session import DriverSession


class AppContext:
    """Per-invocation state shared by CLI commands (settings are read once, at the edge)."""

    # A plain class, not a dataclass: making a dataclass costs ~1 ms at import (it compiles
    # its methods), and every command line process makes this one.
    __slots__ = (
        "_at_head", "_container", "_parts", "_remote", "_session", "_settings", "_token_identity"
    )  # fmt: skip

    def __init__(self) -> None:
        self._settings: Settings | None = None
        self._container: Container | None = None
        self._parts: Container | None = None
        self._at_head = False
        # From the first write on, the invocation's transactions share one driver connection
        # (the accept, then the polls of its wait): storage/driver_session.py.
        self._session: DriverSession | None = None
        self._remote: ApiClient | None = None
        # Who the invocation's token proved to be, once asked (cli/acting.py).
        self._token_identity: Identity | None = None

    @property
    def remote(self) -> ApiClient | None:
        """The client of the HTTP API when ``METAWSM_API_URL`` is set, else None: the one place
        where a command chooses between the API and the database (cli/remote.py).

        Raises:
            UsageError: the URL is set without ``METAWSM_TOKEN``, or is not an http(s) URL.
        """
        if self._remote is None:
            from metawsm.cli.remote import api_mode, client_from_env

            if not api_mode():
                return None
            self._remote = client_from_env()
        return self._remote

    @property
    def settings(self) -> Settings:
        """The settings, loaded from the environment on first use."""
        if self._settings is None:
            from metawsm.settings import load_settings

            self._settings = load_settings()
        return self._settings

    def refuse_database_over_api(self) -> None:
        """A command of the API's scope that has no endpoint yet stops here with METAWSM_API_URL
        set, rather than look for a database this host may not have, or act without the API.

        Raises:
            UsageError: naming the command and what to do instead (exit 2, nothing changed).
        """
        from metawsm.cli.remote import API_URL_ENV, OVER_THE_API, api_mode

        ctx = click.get_current_context(silent=True)
        if ctx is None or not api_mode():
            return
        path = ctx.command_path.split()[1:]
        if path and path[0] in OVER_THE_API:
            raise UsageError(
                f"metawsm {' '.join(path)} does not work over the HTTP API yet ({API_URL_ENV} is"
                f" set): run it where the database is, without {API_URL_ENV}"
            )

    def require_database(self) -> None:
        """Check the database exists before anything opens it: a SQLite file is created only by
        ``db upgrade`` and ``up``, never by a read or a write (which would make a second, empty
        database when run from another directory).

        Raises:
            DatabaseMissing: naming the path, how it was chosen and how to point at another.
        """
        from metawsm.database_location import missing_database_message, missing_sqlite_file

        url = self.settings.database_url
        path = missing_sqlite_file(url)
        if path is not None:
            from metawsm.errors import DatabaseMissing
            from metawsm.settings import database_url_origin

            raise DatabaseMissing(missing_database_message(path, database_url_origin()))

    @property
    def container(self) -> Container:
        """The composition root, built on first use after checking the schema is at head."""
        if self._container is None:
            from metawsm.storage.schema_head import ensure_schema_at_head

            container = self.parts
            ensure_schema_at_head(container.engine)
            self._container = container
        return self._container

    @property
    def parts(self) -> Container:
        """The composition root without the schema check: what builds nothing until asked
        (topics, the publisher) for the driver paths, which check the schema themselves."""
        if self._parts is None:
            from metawsm.bootstrap import build

            self.refuse_database_over_api()
            self.require_database()
            self._parts = build(self.settings)
        return self._parts

    def direct(self) -> bool:
        """True when the database is one the driver paths open themselves (storage/dbapi.py)."""
        from metawsm.storage.dbapi import direct_target

        return direct_target(self.settings.database_url) is not None

    @contextmanager
    def reading(self, *, repeatable: bool = False) -> Iterator[Reader]:
        """One read-only transaction straight through the database driver, after checking the
        schema is at head (no SQLAlchemy imported: storage/dbapi.py). ``repeatable``: every
        statement sees one state (dbapi.read_transaction).

        A database this layer does not open itself (a SQLite file that does not exist yet, a
        URL with options) and a schema not at head go through :attr:`container`, which
        explains the problem (or, for an unusual URL, reads through SQLAlchemy's connection).
        """
        from metawsm.storage import dbapi
        from metawsm.storage.schema_head import reader_at_head

        self.refuse_database_over_api()
        if self.direct():
            if self._session is not None:
                transaction = self._session.reading(repeatable=repeatable)
            else:
                transaction = dbapi.read_transaction(self.settings, repeatable=repeatable)
            with transaction as db:
                if self._at_head or reader_at_head(db):
                    self._at_head = True  # checked once per process: polls skip it
                    yield db
                    return
        with self._engine_reader() as db:
            yield db

    @contextmanager
    def writing(self) -> Iterator[Reader]:
        """One writing transaction straight through the driver (committed when the block
        succeeds), after checking the schema is at head; a schema not at head is explained by
        :attr:`container` (exit 3) and nothing is written. Only when :meth:`direct`.

        The first write opens the connection the invocation's later transactions share
        (:meth:`close` closes it)."""
        from metawsm.storage.driver_session import DriverSession
        from metawsm.storage.schema_head import reader_at_head

        self.refuse_database_over_api()
        if self._session is None:
            self._session = DriverSession(self.settings)
        if not self._at_head:
            with self._session.reading() as db:
                self._at_head = reader_at_head(db)
            if not self._at_head:
                _ = self.container  # raises SchemaNotAtHead with the precise reason
                self._at_head = True
        with self._session.writing() as db:
            yield db

    def close(self) -> None:
        """Release what the invocation holds: the shared driver connection, if any."""
        session, self._session = self._session, None
        if session is not None:
            session.close()

    @contextmanager
    def _engine_reader(self) -> Iterator[Reader]:
        from metawsm.storage.dbapi import Reader, driver_errors
        from metawsm.storage.engine import connect

        engine = self.container.engine  # checks the schema (raises SchemaNotAtHead)
        with connect(engine) as connection, connection.begin(), driver_errors():
            raw = connection.connection.dbapi_connection
            yield Reader(raw, engine.dialect.name)


@contextmanager
def until_interrupted() -> Iterator[None]:
    """Ctrl-C is how a follow ends (forum events --follow, watch, operator): quietly, exit 0,
    not ``interrupted`` and 130 as for a command cut short."""
    import signal
    import threading

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, _end_follow)
    try:
        yield
    except KeyboardInterrupt:
        return
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _end_follow(signum: int, frame: Any) -> None:
    # Not a KeyboardInterrupt: one raised while a weakref or garbage-collector callback runs is
    # printed and swallowed by the interpreter ("Exception ignored in ...") and the follow would
    # go on (seen in CI). A follow has nothing left to finish: what it printed is flushed, exit 0.
    import os
    import sys

    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):
            stream.flush()
    os._exit(0)


_quick_end = [False]
_kept: list[object] = []  # what the last command that ends quickly still holds


def end_quickly(*keep: object) -> None:
    """Let the process end without tearing its heap down once the command has returned.

    For a one-shot command that holds a large result when it is done (``status --json`` at
    1,000 runs: ~10 ms of freeing objects one by one, then the interpreter's own teardown): the
    console entry (metawsm/entry.py) then flushes stdout and stderr and ends the process at
    once, with the command's exit status. Only a command that has finished everything may ask:
    no ``atexit`` handler runs and no other thread is waited for. ``keep``: the result the
    command still holds (a snapshot, its JSON document), kept until the process ends instead
    of freed object by object as the command's functions return (~17 M instructions for a
    1,000-run snapshot and its document). Called in-process (the tests), it changes nothing
    but holding ``keep`` until the next command asks (one result at a time).
    """
    _quick_end[0] = True
    _kept[:] = keep


def quick_end_requested() -> bool:
    """Whether the command asked to end the process at once (:func:`end_quickly`)."""
    return _quick_end[0]


def emit_json(data: Any) -> None:
    """Write ``data`` as JSON on stdout (data on stdout, diagnostics on stderr): indented, keys
    sorted, what ``json.dumps(indent=2, sort_keys=True, default=str)`` writes (cli/json_text.py
    writes it faster)."""
    from metawsm.cli.json_text import dumps

    click.echo(dumps(data))


def render_error(exc: MetawsmError) -> None:
    """Print a metawsm error on stderr, prefixed by its kind."""
    click.echo(f"error: {exc}", err=True)


NOT_UTF8 = (
    "is not valid UTF-8 text (it holds bytes that are not UTF-8: convert it first, e.g. with iconv)"
)


def usage_from_validation(
    exc: ValidationError, prefix: str = "", options: Mapping[str, str] | None = None
) -> UsageError:
    """A usage error naming every invalid field and the rule it broke.

    ``options``: field path (``payload.title``, ``actor.name``, or the last part) → the option
    that gave it (``--title``): the message then names the option a user typed.
    """
    parts = []
    for err in exc.errors():
        path = [str(p) for p in err["loc"] if not str(p).startswith(("function-", "tagged"))]
        loc = ".".join(path)
        if options:
            two = ".".join(path[-2:])
            named = options.get(two) or (options.get(path[-1]) if path else None)
            loc = named or loc
        else:
            loc = prefix + loc
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "string_unicode":
            message = NOT_UTF8
        parts.append(f"{loc}: {message}")
    return UsageError("invalid input: " + "; ".join(parts))


pass_app = click.make_pass_decorator(AppContext, ensure=True)

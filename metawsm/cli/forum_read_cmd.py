"""The reads of ``metawsm forum``: list, search, thread, seen and events (``watch``: its old name).

They join the ``forum`` group when it loads (the lazy table in metawsm/cli/__init__.py). Reads
need the database only; an empty result says so on stderr (nothing on stdout, ``[]``-like JSON).
"""

from __future__ import annotations

import time
from typing import Any

import click

from metawsm.cli.aliases import deprecated_alias
from metawsm.cli.context import AppContext, emit_json, pass_app, until_interrupted
from metawsm.cli.forum_cmd import PRIORITIES, STATES
from metawsm.cli.options import run_id_option
from metawsm.services import thread_reads
from metawsm.settings import env_default

FILTERS = ("ticket", "run_id", "state", "priority", "assignee")


def _thread_id_option(fn: Any) -> Any:
    return click.option("--thread-id", required=True, help="The thread to read.")(fn)


def _filter_options(fn: Any) -> Any:
    for option in reversed(
        [
            click.option(
                "--ticket",
                default=lambda: env_default("TICKET"),
                show_default="$METAWSM_TICKET",
                help="Only this ticket's threads.",
            ),
            run_id_option(required=False),
            click.option("--state", type=STATES, default=None),
            click.option("--priority", type=PRIORITIES, default=None),
            click.option("--assignee", default=None, help="Only threads assigned to this name."),
            click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True),
            click.option("--json", "as_json", is_flag=True, help='Print {"threads": [...]}.'),
        ]
    ):
        fn = option(fn)
    return fn


def _filters(kw: dict[str, Any]) -> thread_reads.ThreadFilter:
    return thread_reads.ThreadFilter(**{name: kw[name] for name in FILTERS})


def _filter_note(kw: dict[str, Any]) -> str:
    """The filters in force, naming the ones that came from the environment."""
    ctx = click.get_current_context()
    shown = []
    for name in FILTERS:
        if kw.get(name):
            from_env = ctx.get_parameter_source(name) == click.core.ParameterSource.DEFAULT
            where = f" from $METAWSM_{name.upper()}" if from_env else ""
            shown.append(f"{name}={kw[name]}{where}")
    return f" (filters: {', '.join(shown)})" if shown else ""


@click.command("list")
@_filter_options
@pass_app
def list_(app: AppContext, /, **kw: Any) -> None:
    """List threads by priority (urgent first), then most recent activity.

    \b
    Example:
      metawsm forum list --ticket TCK-1 --state new --json
    """
    remote = app.remote
    if remote is not None:
        query = {**{name: kw[name] for name in FILTERS}, "limit": kw["limit"]}
        rows = remote.get("/forum/threads", query)["threads"]
    else:
        with app.reading() as db:
            rows = thread_reads.list_threads(db, _filters(kw), kw["limit"])
    _render_threads(rows, kw)


@click.command("search")
@click.option(
    "--query",
    "text",
    default=None,
    help="Whole words (a phrase, case-insensitive) in the title or any post; best match first.",
)
@click.option("--queue", type=click.Choice(["unseen", "unanswered"]), default=None)
@click.option("--viewer-type", type=click.Choice(["human", "agent"]), default=None)
@click.option("--viewer-id", default=None)
@click.option("--cursor", type=int, default=None, help="Only threads with last sequence below.")
@_filter_options
@pass_app
def search(app: AppContext, /, **kw: Any) -> None:
    """Search threads by words, or take a queue: unanswered, or unseen by a viewer.

    --queue unseen needs --viewer-type and --viewer-id (over the API the viewer is the
    token's holder).

    \b
    Example:
      metawsm forum search --query "python version" --json
    """
    remote = app.remote
    if remote is not None:  # the viewer is the token's holder
        query = {**{name: kw[name] for name in FILTERS}, "limit": kw["limit"]}
        query.update(cursor=kw["cursor"])
        path = f"/forum/queues/{kw['queue']}" if kw["queue"] else "/forum/search"
        if not kw["queue"]:
            query.update(query=kw["text"])
        _render_threads(remote.get(path, query)["threads"], kw)
        return
    viewer = None
    if kw["viewer_type"] and kw["viewer_id"]:
        viewer = (kw["viewer_type"], kw["viewer_id"])
    if kw["queue"] == "unseen" and viewer is None:
        raise click.UsageError("--queue unseen requires --viewer-type and --viewer-id")
    with app.reading() as db:
        rows = thread_reads.search(
            db,
            _filters(kw),
            kw["text"],
            viewer=viewer,
            queue=kw["queue"],
            cursor=kw["cursor"],
            limit=kw["limit"],
        )
    _render_threads(rows, kw)


def _render_threads(rows: list[dict[str, Any]], kw: dict[str, Any]) -> None:
    if kw["as_json"]:
        emit_json({"threads": rows})
        return
    for r in rows:
        click.echo(_summary(r))
    if not rows:
        click.echo(f"no threads{_filter_note(kw)}", err=True)


def _summary(r: dict[str, Any]) -> str:
    assignee = f"{r['assignee_type']}/{r['assignee_name']}" if r["assignee_name"] else "-"
    return (
        f"thread={r['thread_id']} ticket={r['ticket']} run_id={r['run_id'] or '-'}"
        f" state={r['state']} priority={r['priority']} assignee={assignee}"
        f" posts={r['posts_count']} updated_at={r['updated_at']} title={r['title']}"
    )


@click.command("thread")
@_thread_id_option
@click.option(
    "--limit",
    type=click.IntRange(1, thread_reads.POSTS_PAGE_MAX),
    default=thread_reads.POSTS_PAGE,
    show_default=True,
    help="Posts per page: the newest ones (below --before).",
)
@click.option(
    "--before",
    type=click.IntRange(min=1),
    default=None,
    help="Only posts with thread_seq below this (the next page: page.next_before).",
)
@click.option("--json", "as_json", is_flag=True)
@pass_app
def thread(app: AppContext, thread_id: str, limit: int, before: int | None, as_json: bool) -> None:
    """Show a thread with a page of its posts (the newest --limit, oldest first).

    \b
    Example:
      metawsm forum thread --thread-id fthr-0193 --limit 20
    """
    remote = app.remote
    if remote is not None:
        from metawsm.cli.remote import segment

        query = {"limit": limit, "before": before}
        detail = remote.get(f"/forum/threads/{segment(thread_id)}", query)
    else:
        with app.reading() as db:
            detail = thread_reads.thread_detail(db, thread_id, limit=limit, before=before)
    if as_json:
        emit_json(detail)
        return
    click.echo(_summary(detail["thread"]))
    for p in detail["posts"]:
        click.echo(f"--- {p['created_at']} {p['author_type']}/{p['author_name']} ({p['kind']})")
        click.echo(p["body"])
    if not detail["posts"]:
        click.echo("no posts", err=True)
    if detail["page"]["next_before"] is not None:
        click.echo(f"older posts: {detail['page']['next']}", err=True)


@click.command("seen")
@_thread_id_option
@click.option("--viewer-type", type=click.Choice(["human", "agent"]), required=True)
@click.option("--viewer-id", required=True)
@click.option("--sequence", type=int, default=0, help="Seen up to this event (default: latest).")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def seen(app: AppContext, /, **kw: Any) -> None:
    """Mark a thread seen by a viewer (the watermark only moves forward).

    \b
    Example:
      metawsm forum seen --thread-id fthr-0193 --viewer-type human --viewer-id hana
    """
    if app.remote is not None:
        result = _seen_remote(app, kw)
    else:
        from metawsm.services import queries

        result = queries.mark_seen(
            app.container.engine,
            kw["thread_id"],
            kw["viewer_type"],
            kw["viewer_id"],
            kw["sequence"],
        )
    if kw["as_json"]:
        emit_json(result)
    else:
        click.echo(f"seen {result['thread_id']} up to {result['last_seen_event_sequence']}")


def _seen_remote(app: AppContext, kw: dict[str, Any]) -> dict[str, Any]:
    """Over the API the viewer is the token's holder (an agent's token the viewer ``agent``,
    any other ``human``): a --viewer-type/--viewer-id naming someone else is exit 2."""
    from metawsm.cli.acting import remote_identity
    from metawsm.cli.remote import TOKEN_ENV, segment
    from metawsm.errors import UsageError

    assert app.remote is not None
    who = remote_identity(app)
    viewer = ("agent" if who.actor_type == "agent" else "human", who.actor_name)
    if (kw["viewer_type"], kw["viewer_id"].lower()) != (viewer[0], viewer[1].lower()):
        raise UsageError(
            f"--viewer-type {kw['viewer_type']} --viewer-id {kw['viewer_id']}: with {TOKEN_ENV}"
            f" set the viewer is {viewer[0]}/{viewer[1]} (the token's holder)"
        )
    path = f"/forum/threads/{segment(kw['thread_id'])}/seen"
    seen: dict[str, Any] = app.remote.post(path, {"sequence": kw["sequence"]})[1]["seen"]
    return seen


@click.command("events")
@click.option("--ticket", default=None, help="Only events of this ticket's threads.")
@run_id_option(required=False)
@click.option("--cursor", type=int, default=0, show_default=True, help="Start after sequence.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--follow", is_flag=True, help="Keep printing events as they commit, until Ctrl-C.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event (JSON lines).")
@pass_app
def events(app: AppContext, /, **kw: Any) -> None:
    """Print the forum's event log after --cursor in commit order; --follow tails it live.

    Without --follow the text form ends with next_cursor=N on stderr, the --cursor of the next
    page. With --follow, Ctrl-C ends it quietly with exit 0.

    \b
    Example:
      metawsm forum events --follow --json
    """
    with until_interrupted():
        _print_events(app, kw)


def _print_events(app: AppContext, kw: dict[str, Any]) -> None:
    if app.remote is not None:
        _print_remote_events(app, kw)
        return
    cursor = kw["cursor"]
    pause = 0.05
    while True:
        with app.reading() as db:  # one short transaction per poll: never holds a snapshot
            found = thread_reads.events_after(
                db, cursor, ticket=kw["ticket"], run_id=kw["run_id"], limit=kw["limit"]
            )
        for event in found:
            _print_event(event, kw["as_json"])
            cursor = event["sequence"]
        if not kw["follow"]:
            if not kw["as_json"]:
                if not found:
                    click.echo(f"no events after {kw['cursor']}", err=True)
                click.echo(f"next_cursor={cursor}", err=True)
            return
        if not found:
            time.sleep(pause)  # tailing: wait for the next commit


def _print_remote_events(app: AppContext, kw: dict[str, Any]) -> None:
    """The events from the API: a page of the log, or (--follow) its live stream."""
    remote = app.remote
    assert remote is not None
    where = {"ticket": kw["ticket"], "run_id": kw["run_id"]}
    if kw["follow"]:
        for event in remote.events(where, kw["cursor"]):
            _print_event(event, kw["as_json"])
        return
    page = remote.get("/events", {**where, "cursor": kw["cursor"], "limit": kw["limit"]})
    for event in page["events"]:
        _print_event(event, kw["as_json"])
    if not kw["as_json"]:
        if not page["events"]:
            click.echo(f"no events after {kw['cursor']}", err=True)
        click.echo(f"next_cursor={page['next_cursor']}", err=True)


def _print_event(event: dict[str, Any], as_json: bool) -> None:
    if as_json:
        import json

        click.echo(json.dumps(event, sort_keys=True))
        return
    actor = event["actor"]
    click.echo(
        f"{event['sequence']} {event['occurred_at']} {event['event_type']}"
        f" thread={event['thread_id'] or '-'} ticket={event['ticket'] or '-'}"
        f" actor={actor['type']}/{actor['name']}"
    )


watch = deprecated_alias(events, "watch", "metawsm forum watch", "metawsm forum events")

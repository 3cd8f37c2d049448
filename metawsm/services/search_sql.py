"""The SQL text of a full-text search, per dialect, shared by the SQLAlchemy and driver reads.

Imports nothing: the command line's ``forum search`` runs it through the driver
(services/thread_reads.py), in-process callers through SQLAlchemy (services/search_index.py).
"""

from __future__ import annotations

from metawsm.errors import UsageError

# ``(thread_id, score)`` of the threads matching the phrase ``:phrase``; a lower score ranks first.
HITS = {
    # rank, not bm25(): an auxiliary function cannot feed an aggregate; rank can.
    "sqlite": (
        "SELECT thread_id, min(rank) AS score FROM forum_search"
        " WHERE forum_search MATCH :phrase AND rank MATCH 'bm25(10.0, 1.0)' GROUP BY thread_id"
    ),
    # ts_rank is higher for better; negated so that both dialects sort ascending.
    "postgresql": (
        "SELECT thread_id, min(-ts_rank(document, query)) AS score"
        " FROM forum_search, phraseto_tsquery("
        "'simple', regexp_replace(:phrase, '[[:punct:]]+', ' ', 'g')) AS query"
        " WHERE document @@ query GROUP BY thread_id"
    ),
}


def phrase(dialect: str, query: str) -> str:
    """The ``:phrase`` parameter of :data:`HITS` for ``query``.

    Raises:
        UsageError: the query holds no letter or digit (nothing a word index can match).
    """
    if not any(ch.isalnum() for ch in query):
        raise UsageError(f"query {query!r}: must contain at least one letter or digit")
    if dialect == "sqlite":
        # One FTS5 string: tokenized like the indexed text, its tokens form a phrase.
        return '"' + query.replace('"', '""') + '"'
    return query

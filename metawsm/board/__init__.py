"""The board: the web page where humans and operators answer agents, triage threads and watch
runs (docs/board.md).

Server-rendered HTML over the same services as the API and the command line, served by
``metawsm api`` at ``/``. A signed-in person's bearer token is kept in an HttpOnly, SameSite
cookie (``session.py``); every write is a form post checked for CSRF and done as that token's
identity by the API's write flow (``api/writes.py``), so the role rules are the same everywhere.
The page updates itself from the API's event follower (``live.py``, ``static/board.js``).
"""

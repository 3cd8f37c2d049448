"""The HTTP API (``metawsm api``): FastAPI on uvicorn over the same services as the CLI.

Nothing here connects at import: :func:`metawsm.api.app.create_app` takes the process's
composition root and the API options; the server (``metawsm.api.server``) runs it. docs/api.md
lists the endpoints, the errors and the stream.
"""

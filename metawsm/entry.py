"""The ``metawsm`` console script and ``python -m metawsm``: the command line's entry point.

``metawsm --version`` is answered here, before click and the command table are imported: it is
the call every tool makes to see whether metawsm is there, and click alone costs more than the
60 ms budget leaves (docs/performance.md, "Command-line start-up"). Everything else goes to
:func:`metawsm.cli.main`; a command that asked to (``cli/context.py`` ``end_quickly``) ends the
process without tearing its heap down, and Ctrl-C ends it at once with exit 130.
"""

from __future__ import annotations

import sys

import metawsm

# Nothing here imports ``typing`` (~40 M instructions, half of what ``--version`` costs): the
# command line's result is typed ``object``.


def main(argv: list[str] | None = None) -> object:
    """Print the version for a bare ``--version``; otherwise run the CLI (metawsm.cli.main)."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["--version"]:
        # The same line click's version option prints.
        sys.stdout.write(f"metawsm, version {metawsm.__version__}\n")
        return None
    if argv is None:  # the process itself: collect nothing while the command line loads
        from metawsm.startup import pause_collection

        pause_collection()
    from metawsm.cli import main as cli_main

    if argv is not None:  # a caller in-process: exits are SystemExit, as click's own
        return cli_main(argv)
    try:
        result = cli_main(argv)
    except SystemExit as exc:
        _end_now_if_interrupted(exc)
        raise
    _end_now_if_asked()
    return result


def _end_now_if_interrupted(exc: SystemExit) -> None:
    # An exit that an interrupt caused (Ctrl-C: 130 and "interrupted"; a drill cut short: 1)
    # ends the process here, at once, with the status asked. Leaving it to the interpreter is
    # not reliable under ``python -m``: when the KeyboardInterrupt came while code made from a
    # string ran (a dataclass or namedtuple being built by a lazy import, which exec()s its
    # methods' source), CPython marks the interrupt as unhandled and, once the module has
    # ended, kills the process with SIGINT whatever status was asked (seen in CI: -2 instead of
    # 130). The command's context is closed by then (click closes it before the Abort reaches
    # cli.main); nothing is left to tear down.
    if not _caused_by_interrupt(exc) or not isinstance(exc.code, int):
        return
    import os
    from contextlib import suppress

    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):  # the reader went away: the status still says why
            stream.flush()
    os._exit(exc.code)


def _caused_by_interrupt(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _end_now_if_asked() -> None:
    # A command that finished with a large result asks to skip the heap's teardown
    # (cli/context.py end_quickly): flush what was written, then end with status 0 (an error
    # raises SystemExit before this point and ends the usual way).
    from metawsm.cli.context import quick_end_requested

    if quick_end_requested():
        import os

        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except OSError:  # the reader went away: what Python's own exit does then (status 120)
            os._exit(120)
        os._exit(0)

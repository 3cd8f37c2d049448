"""The ``metawsm`` console script and ``python -m metawsm``: the command line's entry point.

``metawsm --version`` is answered here, before click and the command table are imported: it is
the call every tool makes to see whether metawsm is there, and click alone costs more than the
60 ms budget leaves (docs/performance.md, "Command-line start-up"). Everything else goes to
:func:`metawsm.cli.main`.
"""

from __future__ import annotations

import sys
from typing import Any

import metawsm


def main(argv: list[str] | None = None) -> Any:
    """Print the version for a bare ``--version``; otherwise run the CLI (metawsm.cli.main)."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["--version"]:
        # The same line click's version option prints.
        sys.stdout.write(f"metawsm, version {metawsm.__version__}\n")
        return None
    from metawsm.cli import main as cli_main

    return cli_main(argv)

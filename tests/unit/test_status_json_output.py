"""``status --json`` writes the same JSON indented on a terminal and compact into a pipe."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from metawsm.cli.json_text import compact, dumps

RUN = {"run_id": "r-1", "tickets": ["T-1"], "queue_counts": {"new": 2}, "brief": None,
       "agents": [{"agent_name": "é", "ok": True}]}  # fmt: skip
DOC = {"generated_at": "2026-12-06T18:00:00Z", "runs": [RUN]}
EMIT = (
    "import json, sys; from metawsm.cli.status_cmd import _emit_snapshot;"
    " _emit_snapshot(json.loads(sys.argv[1]))"
)


def test_compact_is_the_indented_document_on_one_line() -> None:
    text = compact(DOC)
    assert "\n" not in text and ": " not in text
    assert json.loads(text) == json.loads(dumps(DOC)) == DOC
    # json.dumps' own compact text but for the agent's name: UTF-8, not a \\u escape
    assert text == json.dumps(DOC, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def test_a_pipe_gets_one_compact_line() -> None:
    done = subprocess.run(
        [sys.executable, "-c", EMIT, json.dumps(DOC)], capture_output=True, text=True, check=True
    )
    assert done.stdout == compact(DOC) + "\n"


def test_a_terminal_gets_the_indented_text() -> None:
    main, replica = os.openpty()
    try:
        subprocess.run([sys.executable, "-c", EMIT, json.dumps(DOC)], stdout=replica, check=True)
        os.close(replica)
        chunks = []
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # the terminal's other side is closed: everything was read
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(main)
    printed = b"".join(chunks).decode().replace("\r\n", "\n")
    assert printed == dumps(DOC) + "\n"

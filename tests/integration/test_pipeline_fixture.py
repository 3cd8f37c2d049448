"""The pipeline fixture's own waits: settling while the outbox drains fails on a stuck row."""

from __future__ import annotations

import pytest

from tests.fixtures.pipeline import Pipeline


def test_settle_moving_fails_when_nothing_drains_and_returns_once_all_settled(
    idle_pipeline: Pipeline,
) -> None:
    opened = {"thread_id": "t-1", "ticket": "TCK-1", "title": "t", "body": "b"}
    idle_pipeline.submit(idle_pipeline.command("open_thread", "agent", agent_name="bob", **opened))
    assert idle_pipeline.outbox_open() == 1
    with pytest.raises(AssertionError, match="1 open rows"):
        idle_pipeline.settle_moving(stall_s=0.5)  # no worker: the row never moves
    with idle_pipeline.inprocess_worker():
        idle_pipeline.settle_moving(stall_s=15)
    assert idle_pipeline.outbox_open() == 0

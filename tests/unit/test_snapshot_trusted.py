"""The snapshot builder's unvalidated constructor gives the same models as validation."""

from __future__ import annotations

import pytest

from metawsm.domain.snapshot import Blocker, Snapshot
from tests.fixtures.snapshots import NOW
from tests.unit.test_watch_classify import escalation, guidance, snap, thread


def test_a_trusted_model_equals_the_validated_one_and_dumps_the_same() -> None:
    run = snap(
        pending_guidance=[guidance()],
        open_threads=[thread()],
        escalations=[escalation()],
        blockers=[Blocker(kind="gate", reason="r", fix="f")],
    )
    for part in [run, *run.agents, *run.pending_guidance, *run.open_threads, *run.escalations,
                 *run.blockers]:  # fmt: skip
        trusted = type(part).trusted(**dict(part))
        assert trusted == part
        assert trusted.model_dump(mode="json") == part.model_dump(mode="json")
    whole = Snapshot.trusted(generated_at=NOW, runs=[run])
    assert whole == Snapshot(generated_at=NOW, runs=[run])


def test_a_trusted_model_needs_exactly_its_fields() -> None:
    with pytest.raises(TypeError, match=r"Blocker\.trusted needs exactly its fields"):
        Blocker.trusted(kind="gate", reason="r", fix=None)
    with pytest.raises(TypeError):
        Blocker.trusted(kind="gate", reason="r", fix=None, message_id=None, extra=1)

"""The snapshot's blockers: ``from_reads(unmet_only=True)`` gives exactly the unmet gates of
``from_reads``, in order, for random runs and agent states (seeded); ``gate_count`` says how many
``from_reads`` checks (the board's runs page counts the met ones from it)."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from metawsm.domain.control import AgentControl
from metawsm.domain.gates import gate_count
from metawsm.domain.runs import RunStatus
from metawsm.services.gates import from_reads
from metawsm.services.run_reads import RunReads
from metawsm.storage.models import Run


def _agent(rng: random.Random, name: str) -> AgentControl:
    return AgentControl(
        agent_name=name,
        pending=rng.random() < 0.4,
        question=rng.choice((None, "which db?", "it's 'quoted'")),
        completed=rng.random() < 0.5,
        validation_status=rng.choice((None, "passed", "failed", "")),
        validation_done_criteria=rng.choice((None, "tests pass", "")),
    )


@pytest.mark.parametrize("seed", range(60))
def test_unmet_only_is_the_unmet_gates_in_check_order(seed: int) -> None:
    rng = random.Random(seed)
    run = Run(run_id=rng.choice(("run-1", "run x;y")), status=rng.choice(list(RunStatus)).value,
              mode=rng.choice(("run", "bootstrap")), control_epoch=rng.randint(1, 3))  # fmt: skip
    names = ["alice", "bob o'neil"][: rng.randint(0, 2)]
    reads = RunReads(
        agents={
            run.run_id: [
                SimpleNamespace(agent_name=n, status=rng.choice(("running", "failed")))
                for n in names
            ]
        },
        controls={run.run_id: {n: _agent(rng, n) for n in names}},
    )
    if rng.random() < 0.7:
        criteria = rng.choice(("tests pass", "  ", ""))
        reads.briefs[run.run_id] = SimpleNamespace(done_criteria=criteria)  # type: ignore[assignment]
    every = from_reads(run, reads)
    assert from_reads(run, reads, unmet_only=True) == [g for g in every if not g.met]
    failed = len(reads.failed_agents(run.run_id))
    assert gate_count(run.mode, run.status, len(names), failed) == len(every)

"""The drill's tally counts lost and duplicated commands from hand-made ledgers, and its load
mix is every forum command and control signal, valid as submitted."""

from __future__ import annotations

from collections import Counter

from metawsm.drills.load import CYCLE, LoadMix
from metawsm.drills.tally import Facts, tally

OPEN = ["forum.thread.opened"]
ANSWER = ["forum.post.added", "forum.state.changed"]


def test_a_drill_where_every_command_is_final_once_loses_and_duplicates_nothing() -> None:
    facts = Facts(
        statuses={"c1": "applied", "c2": "rejected", "c3": "dead", "c4": "applied"},
        event_types={"c1": OPEN, "c4": ANSWER},
    )
    counts = tally(["c1", "c2", "c3", "c4"], [], facts)
    assert (counts.submitted, counts.applied, counts.rejected, counts.dead) == (4, 2, 1, 1)
    assert (counts.lost, counts.duplicated, counts.ok) == (0, 0, True)


def test_a_command_missing_from_the_ledger_or_never_final_is_lost() -> None:
    facts = Facts(statuses={"c1": "applied", "c3": "accepted"}, event_types={"c1": OPEN})
    counts = tally(["c1", "c2", "c3"], [], facts)
    assert (counts.lost_commands, counts.lost, counts.ok) == (2, 2, False)
    assert counts.lost_ids == ["c2", "c3"]


def test_an_event_never_projected_counts_as_lost() -> None:
    facts = Facts({"c1": "applied"}, {"c1": OPEN}, unprojected_events=["fevt-1"])
    counts = tally(["c1"], [], facts)
    assert (counts.lost_commands, counts.lost_events, counts.lost) == (0, 1, 1)
    assert not counts.ok and counts.lost_ids == ["fevt-1"]


def test_a_command_whose_event_was_written_twice_is_duplicated() -> None:
    facts = Facts(
        statuses={"c1": "applied", "c2": "applied"},
        event_types={"c1": [*ANSWER, "forum.post.added"], "c2": ANSWER},
    )
    counts = tally(["c1", "c2"], [], facts)
    assert (counts.duplicated, counts.duplicated_ids, counts.lost, counts.ok) == (
        1, ["c1"], 0, False,
    )  # fmt: skip


def test_a_submit_that_raised_counts_only_when_the_ledger_holds_it() -> None:
    facts = Facts(statuses={"c1": "applied", "u1": "applied"}, event_types={})
    counts = tally(["c1"], ["u1", "u2"], facts)
    assert (counts.submitted, counts.applied, counts.lost) == (2, 2, 0)


def test_the_load_mix_cycles_through_every_command_and_signal() -> None:
    mix = LoadMix(run_id="run-1")
    commands = [mix.next_command() for _ in range(len(CYCLE) * 6)]
    kinds = Counter(c.command_type for c in commands)
    assert set(kinds) == {
        "open_thread", "add_post", "set_priority", "assign_thread", "answer_thread",
        "change_state", "control_signal", "close_thread",
    }  # fmt: skip
    signals = {
        c.payload.signal.control_type for c in commands if c.command_type == "control_signal"
    }  # type: ignore[union-attr]
    assert signals == {"guidance_request", "guidance_answer"}
    # Commands on a thread only once it was opened a while before.
    opened = [c.payload.thread_id for c in commands if c.command_type == "open_thread"]  # type: ignore[union-attr]
    for n, command in enumerate(commands):
        thread = getattr(command.payload, "thread_id", None)
        if command.command_type not in ("open_thread", "control_signal"):
            assert thread in opened and int(str(thread).split("-")[1]) <= n - 10

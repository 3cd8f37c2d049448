"""bench/scale_measure.py's share of CPU time stolen by the hypervisor, printed with the figures."""

from __future__ import annotations

from bench.scale_measure import cpu_jiffies, steal_pct


def test_the_stolen_share_is_the_steal_field_over_all_time_between_two_readings() -> None:
    start = [100, 0, 50, 800, 10, 0, 0, 40, 0, 0]
    end = [400, 0, 100, 1300, 10, 0, 0, 140, 0, 0]  # 300 + 50 + 500 + 100 = 950 jiffies
    assert steal_pct(start, end) == round(100 * 100 / 950, 1)


def test_no_reading_or_no_time_between_gives_none() -> None:
    assert steal_pct([], [1, 2]) is None
    same = [1, 2, 3, 4, 5, 6, 7, 8]
    assert steal_pct(same, same) is None


def test_this_machine_reports_its_cpu_time_by_kind() -> None:
    jiffies = cpu_jiffies()
    assert len(jiffies) >= 8 and all(j >= 0 for j in jiffies)

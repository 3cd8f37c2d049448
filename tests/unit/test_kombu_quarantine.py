"""The seam metawsm uses in kombu's Redis channel is still there in the kombu installed."""

from __future__ import annotations

import inspect

from kombu.transport import redis as kombu_redis

from metawsm.transport import kombu_quarantine


def test_kombus_reads_still_decode_the_popped_element_through_the_module_helpers() -> None:
    # kombu_quarantine replaces kombu.transport.redis.loads/bytes_to_str during a read: that
    # only reaches the element while kombu's reads decode it with exactly this call.
    for name, read in kombu_quarantine.KOMBU_READS.items():
        assert "loads(bytes_to_str(item))" in inspect.getsource(read), (
            f"kombu's Channel.{name} no longer decodes with loads(bytes_to_str(item)):"
            " check metawsm/transport/kombu_quarantine.py against it"
        )


def test_install_wraps_kombus_reads_and_can_run_twice() -> None:
    kombu_quarantine.install()
    kombu_quarantine.install()
    assert kombu_redis.Channel._brpop_read is kombu_quarantine._brpop_read
    assert kombu_redis.Channel._get is kombu_quarantine._get
    assert kombu_redis.loads is kombu_quarantine._loads
    assert kombu_redis.bytes_to_str is kombu_quarantine._bytes_to_str


def test_outside_a_read_the_helpers_behave_as_kombus() -> None:
    kombu_quarantine.install()
    assert kombu_redis.loads('{"a": 1}') == {"a": 1}
    assert kombu_redis.bytes_to_str(b"q") == "q"
    try:
        kombu_redis.loads("garbage")
    except ValueError:
        pass
    else:
        raise AssertionError("outside a read, bad JSON must raise as kombu's loads does")

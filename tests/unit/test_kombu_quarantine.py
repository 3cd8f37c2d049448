"""The reads metawsm puts in kombu's Redis channel stay copies of the kombu installed."""

from __future__ import annotations

import hashlib
import inspect

from kombu.transport import redis as kombu_redis

from metawsm.transport import kombu_quarantine

# SHA-256 of the source of kombu 5.7.0's Channel._brpop_read and Channel._get, which
# metawsm/transport/kombu_quarantine.py copies with only the decoding of the element changed.
COPIED_FROM = {
    "_brpop_read": "c42518699709f2df90f55a048fe6346612ae5527e5c4a6819f2c0920dc62088f",
    "_get": "be26a9f1eb4cf8da2aa65f4815a1709bf80b4434b064d3d7146872d318ad506c",
}


def test_the_kombu_reads_replaced_are_the_ones_they_were_copied_from() -> None:
    found = {
        name: hashlib.sha256(inspect.getsource(read).encode()).hexdigest()
        for name, read in kombu_quarantine.KOMBU_READS.items()
    }
    assert found == COPIED_FROM, (
        "kombu's Channel._brpop_read or _get changed: port the change into"
        " metawsm/transport/kombu_quarantine.py, then update COPIED_FROM"
    )


def test_install_puts_metawsm_reads_in_the_channel_and_can_run_twice() -> None:
    kombu_quarantine.install()
    kombu_quarantine.install()
    channel = kombu_redis.Channel
    assert channel._brpop_read is kombu_quarantine._brpop_read
    assert channel._get is kombu_quarantine._get

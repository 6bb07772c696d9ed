"""The registry's puller against a real nats-server: a stored message is told from the server's status by
its reply subject alone, a late status of an earlier request ends no later one (and no request is left
open on the server), and a consumer that is gone is a refusal, never an empty batch fetched again at once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from nats.js import api

from tests.host.lattice.loopback import LoopbackLattice
from worldrt.host.lattice._nats import Lattice, LatticeDown
from worldrt.host.lattice._pull import Puller

pytestmark = pytest.mark.daemons
STREAM, DURABLE = "PULLTEST", "reader"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lattice]:
    lattice = LoopbackLattice(tmp_path_factory.mktemp("pull"))
    try:
        yield lattice.client()
    finally:
        lattice.close()


@pytest.fixture
def puller(client: Lattice) -> Iterator[Puller]:
    async def make() -> Puller:
        await client.js.add_stream(name=STREAM, subjects=["pulltest.>"])
        await client.js.add_consumer(STREAM, api.ConsumerConfig(durable_name=DURABLE,
                                                                ack_policy=api.AckPolicy.EXPLICIT))
        made = Puller(client.nc, STREAM, DURABLE)
        await made.start()
        return made
    made = client.run(make())
    yield made
    client.run(made.unsubscribe())
    client.run(client.js.delete_stream(STREAM))


def _fetch(client: Lattice, puller: Puller, batch: int, timeout: float) -> list[Any]:
    async def fetch() -> list[Any]:
        got = await puller.fetch(batch, timeout)
        for msg in got:
            await msg.ack()
        return got
    return client.run(fetch())


def _waiting(client: Lattice) -> int:
    return int(client.run(client.js.consumer_info(STREAM, DURABLE)).num_waiting or 0)


def test_a_stored_message_with_status_headers_is_a_message(client: Lattice, puller: Puller) -> None:
    for status in ("404", "408", "503"):
        client.run(client.js.publish(f"pulltest.{status}", status.encode(), headers={"Status": status}))
    got = _fetch(client, puller, 10, 2.0)
    assert sorted(msg.data for msg in got) == [b"404", b"408", b"503"]


def test_late_statuses_of_earlier_requests_end_nothing_and_no_request_stays_open(client: Lattice,
                                                                                 puller: Puller) -> None:
    # Requests made on the puller's inbox outside its fetches (as a reconnect delivers requests held while the
    # client was away): their statuses reach the puller while it waits for its own.
    async def stale(n: int) -> None:
        for i in range(n):
            await client.nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.{STREAM}.{DURABLE}",
                                    json.dumps({"batch": 1, "no_wait": True}).encode(),
                                    reply=f"{puller._inbox}.stale{i}")
        await client.nc.flush()
    client.run(stale(3))
    for i in range(3):
        client.run(client.js.publish(f"pulltest.m{i}", f"m{i}".encode()))
    assert sorted(msg.data for msg in _fetch(client, puller, 10, 2.0)) == [b"m0", b"m1", b"m2"]
    for _ in range(4):  # on an empty stream each fetch ends on its own request's expiry, leaving none open
        assert _fetch(client, puller, 10, 0.3) == []
        assert _waiting(client) == 0


def test_a_consumer_that_is_gone_is_a_refusal(client: Lattice, puller: Puller) -> None:
    client.run(client.js.delete_consumer(STREAM, DURABLE))
    with pytest.raises(LatticeDown, match="refused the pull of reader on PULLTEST"):
        _fetch(client, puller, 10, 2.0)

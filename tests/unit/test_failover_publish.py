"""`publish_confirmed`: which refusals of a publish are sent again, and on which channel.

The broker here is a fake channel whose AMQP channel can be renewed: what RabbitMQ does to
a nacked channel is `tests/faults/test_cluster.py`'s business, and what aio-pika does to a
renewed one is `tests/integration/test_broker_failover.py`'s.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiormq import spec
from aiormq.abc import DeliveredMessage
from aiormq.exceptions import ChannelInvalidStateError, DeliveryError, PublishError

from scribe_runtime.failover import ChannelRenewer, is_nack, publish_confirmed

NACK = spec.Basic.Nack(delivery_tag=1, multiple=True)
RETURN = spec.Basic.Return(reply_code=312, reply_text="NO_ROUTE", exchange="x", routing_key="k")


def returned() -> PublishError:
    """What aiormq raises for a mandatory message no queue took."""
    message = DeliveredMessage(delivery=RETURN, header=None, body=b"", channel=None)  # type: ignore[arg-type]
    return PublishError(message, RETURN)


class FakeUnderlay:
    def __init__(self, owner: FakeChannel) -> None:
        self.owner = owner

    async def close(self, exc: BaseException | None = None) -> None:
        # aio-pika's robust channel opens a new AMQP channel when its own closes with an error.
        self.owner.renewals += 1
        self.owner.underlay = FakeUnderlay(self.owner)
        await self.owner.reopen_callbacks_fire()


class FakeChannel:
    """A channel whose first `poisoned_channels` AMQP channels nack every publish."""

    def __init__(self, poisoned_channels: int) -> None:
        self.poisoned_channels = poisoned_channels
        self.renewals = 0
        self.underlay = FakeUnderlay(self)
        self.reopen_callbacks: set[Any] = set()
        self.published = 0

    async def reopen_callbacks_fire(self) -> None:
        await asyncio.sleep(0)
        for callback in list(self.reopen_callbacks):
            callback(self)

    async def get_underlay_channel(self) -> FakeUnderlay:
        return self.underlay

    async def publish(self) -> None:
        await asyncio.sleep(0.001)
        if self.renewals < self.poisoned_channels:
            raise DeliveryError(None, NACK)
        self.published += 1


def renewer_of(channel: FakeChannel) -> ChannelRenewer:
    async def get() -> Any:
        return channel

    return ChannelRenewer(get)


def test_a_nack_is_told_from_a_return() -> None:
    assert is_nack(DeliveryError(None, NACK))
    assert not is_nack(returned())
    assert not is_nack(ChannelInvalidStateError("closed"))


async def test_a_nacked_publish_goes_out_again_on_a_new_channel() -> None:
    channel = FakeChannel(poisoned_channels=2)
    await publish_confirmed(channel.publish, renewer=renewer_of(channel), within=10)
    assert (channel.renewals, channel.published) == (2, 1)


async def test_publishes_nacked_together_renew_their_channel_once() -> None:
    channel = FakeChannel(poisoned_channels=1)
    renewer = renewer_of(channel)
    await asyncio.gather(
        *(publish_confirmed(channel.publish, renewer=renewer, within=10) for _ in range(20))
    )
    assert (channel.renewals, channel.published) == (1, 20)


async def test_a_nack_without_a_renewer_or_past_the_deadline_is_raised() -> None:
    channel = FakeChannel(poisoned_channels=1)
    with pytest.raises(DeliveryError):
        await publish_confirmed(channel.publish, within=10)
    forever = FakeChannel(poisoned_channels=10**6)
    with pytest.raises(DeliveryError):
        await publish_confirmed(forever.publish, renewer=renewer_of(forever), within=0.5)
    assert forever.renewals >= 1


async def test_an_unroutable_return_is_raised_at_once_without_a_renewal() -> None:
    channel = FakeChannel(poisoned_channels=0)
    attempts = 0

    async def unroutable() -> None:
        nonlocal attempts
        attempts += 1
        raise returned()

    with pytest.raises(PublishError):
        await publish_confirmed(unroutable, renewer=renewer_of(channel), within=10)
    assert (attempts, channel.renewals) == (1, 0)

"""Several broker addresses for one RabbitMQ cluster: connect to one that answers, move on
when it goes.

`SCRIBE_AMQP_URL` may list the cluster's nodes, comma-separated
(`amqp://u:p@rabbit-0:5672/,amqp://u:p@rabbit-1:5672/`); one load-balanced name (a
Kubernetes Service) needs no list. Neither FastStream 0.7 nor aio-pika 10 takes a list:
`RabbitBroker(url)` hands one URL to `aio_pika.connect_robust`, whose robust connection
reconnects to that same URL forever. `FailoverConnection` is that robust connection with
two changes: each connection attempt, the first and every reconnect, goes to the next
address in turn, so a stopped node is skipped and its consumers and channels are restored
on a surviving one by aio-pika's own recovery; and that recovery can no longer hang
forever. `make_broker` uses it for one address too (a restore is as fragile there).

aio-pika restores a connection's channels inside the reconnect task, after it has marked
the connection `connected`, and every declare, bind and consume of that restore first
awaits `connection.ready()`. When the new connection is lost during the restore (a node
stopping mid-failover, a quorum queue's consume refused while its leader moves), the close
callback clears `connected` and the next restore step waits for it: for the reconnect
task that alone would set it again. The connection stayed down for the life of the process
(ingest answered 503 `broker_unavailable` to every later upload, consumers never came
back). `FailoverConnection` runs the restore beside the connection's closing: a connection
lost, or a restore past `RESTORE_SECONDS`, cancels the restore, closes that connection and
hands aio-pika's loop a connection error, and the loop tries the next address.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final
from weakref import WeakKeyDictionary

import aio_pika
import structlog
from aio_pika.abc import AbstractRobustChannel
from aio_pika.exceptions import AMQPConnectionError
from aio_pika.robust_connection import RobustConnection
from aiormq import spec
from aiormq.exceptions import (
    ChannelClosed,
    ChannelInvalidStateError,
    ChannelNotFoundEntity,
    DeliveryError,
    PublishError,
)
from yarl import URL

if TYPE_CHECKING:
    from faststream.rabbit import RabbitBroker

log = structlog.get_logger(__name__)

FAILOVER_RECONNECT_SECONDS: Final = 1.0
"""Pause between two connection attempts when several nodes are listed (aio-pika's default
is 5 s: with a list, the next attempt goes to another node, so there is no reason to wait)."""

RESTORE_SECONDS: Final = 30.0
"""The longest a restore of a new connection's channels, exchanges, queues and consumers may
take before the connection is dropped and the next attempt made (a restore takes
milliseconds; a quorum queue electing a leader holds a consume for seconds)."""


class RestoreAbortedError(AMQPConnectionError):
    """A new connection was lost, or its restore took too long: the next attempt follows."""


def broker_urls(amqp_url: str) -> tuple[str, ...]:
    """The addresses of `SCRIBE_AMQP_URL`: one URL or a comma-separated list of them.

    A comma inside a password must be written `%2C` (as any URL would have it).
    """
    urls = tuple(part.strip() for part in amqp_url.split(",") if part.strip())
    if not urls:
        raise ValueError("no broker address given")
    return urls


class FailoverConnection(RobustConnection):
    """aio-pika's robust connection, trying the cluster's addresses in turn.

    aio-pika reads `self.url` once per attempt and sets `self.transport = None` just before
    each one (`RobustConnection.__connect_transport`); that assignment is the hook where
    the next address is chosen. Built through `connection_class(urls)`.
    """

    URLS: tuple[URL, ...] = ()
    _transport: Any

    def __init__(self, url: URL, loop: asyncio.AbstractEventLoop | None = None, **kwargs: Any):
        self._index = 0
        self._tried = False
        self._urls = self.URLS or (URL(url),)
        super().__init__(url, loop=loop, **kwargs)

    @property
    def url(self) -> URL:
        return self._urls[self._index % len(self._urls)]

    @url.setter
    def url(self, value: URL) -> None:
        # aio-pika sets it in __init__ and on `update_secret` (a new password): keep the
        # list, each address with the new credentials.
        value = URL(value)
        if value.password != self._urls[0].password:
            self._urls = tuple(u.with_password(value.password) for u in self._urls)

    @property
    def transport(self) -> Any:
        return self._transport

    @transport.setter
    def transport(self, value: Any) -> None:
        if value is None and hasattr(self, "_transport"):
            # A connection attempt begins. After a lost connection, or after an attempt
            # that never connected, the next address takes its turn.
            if self._transport is not None or self._tried:
                self._index += 1
            self._tried = True
        self._transport = value

    def _node(self) -> str:
        """This attempt's address, for logs (no password)."""
        url = self.url
        return str(url.with_password("******") if url.password else url)

    async def _on_connected(self) -> None:
        """aio-pika's restore of the channels, bounded by the connection's life and in time."""
        transport = self.transport
        if transport is None:
            await super()._on_connected()  # raises: no transport
            return
        reconnect = self.connection_attempt > 0
        lost = transport.connection.closing
        restoring = asyncio.ensure_future(super()._on_connected())
        try:
            done, _ = await asyncio.wait(
                (restoring, lost), timeout=RESTORE_SECONDS, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            lost.cancel()  # an observer of the closing only, never the connection's own
            if not restoring.done():
                restoring.cancel()
                await asyncio.gather(restoring, return_exceptions=True)
        if restoring in done and not restoring.cancelled():
            error = restoring.exception()
            if error is not None:
                # aio-pika closed the connection; its loop logs the failure and retries.
                log.warning("broker_restore_failed", node=self._node(), error=repr(error))
                raise error
            if reconnect:
                log.info("broker_reconnected", node=self._node(), attempt=self.connection_attempt)
            return
        if lost in done:
            reason = "the connection was lost during the restore"
        elif restoring in done:
            reason = "the restore was cancelled"
        else:
            reason = f"the restore took longer than {RESTORE_SECONDS:g} s"
        log.warning("broker_restore_aborted", node=self._node(), reason=reason)
        error = RestoreAbortedError(reason)
        self.connected.clear()
        await asyncio.gather(transport.connection.close(error), return_exceptions=True)
        raise error

    async def _on_connection_close(self, closing: asyncio.Future[Any]) -> None:
        # A lost connection, not an attempt that never connected (aio-pika logs those).
        if self.transport is not None and not (self._close_called or self.is_closed):
            error = None if closing.cancelled() else closing.exception()
            log.warning("broker_connection_lost", node=self._node(), error=repr(error))
        await super()._on_connection_close(closing)


def connection_class(urls: tuple[str, ...]) -> type[FailoverConnection]:
    """A `FailoverConnection` over these addresses (a class: aio-pika instantiates it)."""
    return type("FailoverConnection", (FailoverConnection,), {"URLS": tuple(URL(u) for u in urls)})


async def connect(amqp_url: str, *, connect_timeout: float = 10) -> aio_pika.abc.AbstractConnection:
    """A plain (not robust) connection to the first listed node that answers."""
    errors: list[str] = []
    for url in broker_urls(amqp_url):
        try:
            return await aio_pika.connect(url, timeout=connect_timeout)
        except (OSError, TimeoutError, aio_pika.exceptions.AMQPConnectionError) as exc:
            errors.append(f"{URL(url).with_password('******')}: {exc!r}")
    raise ConnectionError("no broker node answered: " + "; ".join(errors))


FAILOVER_PUBLISH_SECONDS: Final = 30.0
"""How long a publish keeps trying through a lost connection (a node stopping, the cluster
electing new queue leaders, the connection moving to another node: seconds, measured in
`tests/faults/test_cluster.py`). Callers with a tighter bound (ingest's
`publish_timeout_seconds`) cancel sooner."""

RETRYABLE_PUBLISH_ERRORS: Final = (ConnectionError, ChannelInvalidStateError, ChannelClosed)
"""The connection or channel went away under the publish: its confirm never came."""

RENEW_SECONDS: Final = 10.0
"""The longest a renewed channel may take to open again before the publish is retried
anyway (it then meets the channel's own restore, or the connection's)."""


class ChannelRenewedError(Exception):
    """Why a publishing channel was closed by its own client: the broker kept nacking it."""


def is_nack(exc: BaseException) -> bool:
    """The broker refused a publish (`basic.nack`), as opposed to returning it unroutable."""
    return (
        isinstance(exc, DeliveryError)
        and not isinstance(exc, PublishError)
        and isinstance(exc.frame, spec.Basic.Nack)
    )


class ChannelRenewer:
    """Replaces a publishing channel that the broker nacks, once per nacked channel.

    RabbitMQ 3.10 (Debian's) keeps, per channel and quorum queue, the queue's leader as it
    was when the channel first published to it. When that first publish comes while the
    queue's record still names a leader on a node that has just stopped, the broker's
    enqueuer registration asks that node, gets `nodedown` and nacks the publish without
    forgetting the dead leader (`rabbit_fifo_client:enqueue/3`, 3.10.8): every later
    publish of that channel to that queue is nacked too, for the life of the channel.
    That is what left ingest answering 503 to every upload after a failover
    (`tests/faults/test_cluster.py`, about one run in three). A new channel asks the queue
    record afresh, so a nacked publish is sent again on a new channel.

    Concurrent publishes nacked on the same channel renew it once: each attempt notes the
    `generation` it started on, and a renewal asked for an older generation is skipped.
    """

    def __init__(self, channel: Callable[[], Awaitable[AbstractRobustChannel]]) -> None:
        self._channel = channel
        self._lock = asyncio.Lock()
        self.generation = 0

    async def renew(self, seen: int, reason: BaseException) -> None:
        """Close the channel's AMQP channel (aio-pika's robust channel opens a new one in
        its place, with its exchanges and queues) unless it was renewed since `seen`."""
        async with self._lock:
            if seen != self.generation:
                return
            self.generation += 1
            channel = await self._channel()
            reopened = asyncio.Event()

            def on_reopen(*_: object) -> None:
                reopened.set()

            channel.reopen_callbacks.add(on_reopen)
            try:
                underlay = await channel.get_underlay_channel()
                await underlay.close(ChannelRenewedError(repr(reason)))
                await asyncio.wait_for(reopened.wait(), RENEW_SECONDS)
                log.warning("publish_channel_renewed", reason=repr(reason))
            except (TimeoutError, *RETRYABLE_PUBLISH_ERRORS) as exc:
                # The connection went meanwhile: its restore opens the channel again.
                log.warning("publish_channel_not_renewed", reason=repr(reason), error=repr(exc))
            finally:
                channel.reopen_callbacks.discard(on_reopen)


async def publish_confirmed(
    publish: Callable[[], Awaitable[object]],
    *,
    renewer: ChannelRenewer | None = None,
    within: float = FAILOVER_PUBLISH_SECONDS,
) -> None:
    """Run `publish` (one confirmed publish) until the broker confirms it.

    A publish whose confirm was lost with its connection may or may not have been
    enqueued; it is sent again on the restored connection. A publish the broker nacked is
    sent again on a new channel when a `renewer` is given (`ChannelRenewer` says why); a
    message routed to several queues may then reach a queue that had taken it twice.
    Every Scribe message carries its event id as `message_id` and every consumer is
    idempotent by it (outcome events have ids derived from the job), so a copy is harmless
    and a loss is not possible. A return (unroutable), a `ChannelNotFoundEntity` or an
    error of the caller's is raised at once; a nack without a `renewer`, too.
    """
    deadline = asyncio.get_running_loop().time() + within
    pause = 0.1
    while True:
        seen = renewer.generation if renewer is not None else 0
        try:
            await publish()
            return
        except ChannelNotFoundEntity:
            raise
        except RETRYABLE_PUBLISH_ERRORS as exc:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise
            log.warning("publish_retried_after_connection_loss", error=repr(exc))
        except DeliveryError as exc:
            remaining = deadline - asyncio.get_running_loop().time()
            if renewer is None or not is_nack(exc) or remaining <= 0:
                raise
            await renewer.renew(seen, exc)
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise
        await asyncio.sleep(min(pause, remaining))
        pause = min(pause * 2, 2.0)


_RENEWERS: WeakKeyDictionary[RabbitBroker, ChannelRenewer] = WeakKeyDictionary()


def channel_renewer(broker: RabbitBroker) -> ChannelRenewer:
    """The `ChannelRenewer` of a FastStream broker's default channel, the one its publishers
    and `broker.publish` use (one per broker)."""
    renewer = _RENEWERS.get(broker)
    if renewer is None:
        # FastStream 0.7.8 has no public accessor for the channel its publishes go through;
        # its channel manager hands out that one, cached (checked in 0.7.8's source).
        renewer = _RENEWERS[broker] = ChannelRenewer(broker.config.channel_manager.get_channel)
    return renewer

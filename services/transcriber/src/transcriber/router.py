"""The pool router: every `audio.uploaded.v1` to the pool of the model it asks for.

Producers (ingest and anyone else) publish uploads with the plain routing key
`audio.uploaded.v1`; they land in the intake queue `transcriber.audio-uploaded`. A router
runs inside every transcriber, beside its worker: it takes each upload from the intake,
refuses an unknown tenant's (dead-lettered, as before pools existed), picks the pool of
`options.model` (the default model's when the job names none) and republishes the message
unchanged, id included, to `pool_routing_key(model)` with `mandatory` and a confirm; only
then is the intake message acked. A crash in between redelivers the upload and the pool
gets it twice: the worker's outcome ids are derived from the job, so the indexer and
every consumer still see one outcome (exactly-once effects, at-least-once work).

Which pools exist is what the broker knows: a pool is its bound queue. A model whose
routing key reaches no queue is returned by the broker, and the job fails at once with
`model_unavailable` (`transcription.failed.v1`, not retryable): no `started`, no
transcription, never a silent downgrade to another model.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Final

import structlog

from contracts.audio import AudioUploadedV1
from contracts.envelope import Event
from contracts.errors import ErrorCode
from contracts.transcription import TranscriptionFailedV1
from scribe_runtime.amqp import Delivery, UnroutableError
from scribe_runtime.topology import UnknownPoolError, pool_routing_key
from transcriber import metrics
from transcriber.admission import Admission, DeadLetter, Refusal

log = structlog.get_logger(__name__)

Forward = Callable[[Delivery, str, str], Awaitable[None]]
"""Republish the delivery to a routing key (for a pool); `UnroutableError` if none is bound."""
Publish = Callable[[Event], Awaitable[None]]

_UNAVAILABLE: Final = f"failed:{ErrorCode.MODEL_UNAVAILABLE}"


def refusal_event_id(event: AudioUploadedV1) -> uuid.UUID:
    """The id a worker would give the same refusal (`service.outcome_event_id`): one outcome."""
    return uuid.uuid5(event.job_id, f"outcome:{event.tenant_id}:{_UNAVAILABLE}")


class PoolRouter:
    """Routes uploads from the intake queue to the model pools."""

    def __init__(
        self,
        *,
        default_model: str,
        forward: Forward,
        publish: Publish,
        admission: Admission,
        dead_letter: DeadLetter,
        producer: str,
    ) -> None:
        self._default = default_model
        self._forward = forward
        self._publish = publish
        self._admission = admission
        self._dead_letter = dead_letter
        self._producer = producer

    def pool_of(self, event: AudioUploadedV1) -> str:
        """The model pool the job belongs to."""
        return event.options.model or self._default

    async def on_audio_uploaded(self, event: AudioUploadedV1, delivery: Delivery) -> None:
        """Forward to the pool (then acked), or fail the job when no pool serves its model."""
        verdict = self._admission.check(event)
        if isinstance(verdict, Refusal):
            await self._dead_letter(delivery, code=verdict.code, reason=verdict.reason)
            metrics.REFUSED.labels(str(verdict.code)).inc()
            return
        model = self.pool_of(event)
        try:
            key = pool_routing_key(model)
            await self._forward(delivery, key, model)
        except (UnknownPoolError, UnroutableError):
            await self._unavailable(event, model, delivery.attempt)
            return
        metrics.ROUTED.labels(model).inc()
        log.debug("upload_routed", pool=model, routing_key=key)

    async def _unavailable(self, event: AudioUploadedV1, model: str, attempt: int) -> None:
        failed = TranscriptionFailedV1(
            event_id=refusal_event_id(event),
            job_id=event.job_id,
            tenant_id=event.tenant_id,
            correlation_id=event.correlation_id,
            producer=self._producer,
            job_fingerprint=event.job_fingerprint(),
            code=ErrorCode.MODEL_UNAVAILABLE,
            message=(
                f"no transcriber pool serves model {model[:128]!r}; ask for a served model "
                "(GET /v1/models)"
            ),
            retryable=False,
            attempts=attempt,
        )
        await self._publish(failed)
        metrics.JOBS.labels(outcome="failed", code=str(ErrorCode.MODEL_UNAVAILABLE)).inc()
        log.warning("transcription_failed", code=str(ErrorCode.MODEL_UNAVAILABLE), pool=model)

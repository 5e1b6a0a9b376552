"""Bucket notifications as a producer: S3 event JSON in, `audio.uploaded.v1` out.

Object stores publish the standard S3 event format (`Records[].eventName`,
`.s3.bucket.name`, `.s3.object.key` URL-encoded, `.eTag`, `.versionId`, `.size`): MinIO
and Ceph to an AMQP exchange, AWS through SQS or EventBridge (bridged to
`scribe.bucket-events`). Ingest consumes `ingest.bucket-events` and publishes one
`audio.uploaded.v1` per `ObjectCreated:*` record, with confirms, before it acks.

Idempotent: the job id is a uuid5 of bucket, key and version (or ETag), and the event id
one of the job id, so a notification delivered twice (at-least-once, by every store) is
the same event twice, which the indexer records once: one job.

Whose object it is comes from the configuration, never from the message: the tenant whose
`SCRIBE_S3_TENANT_PREFIXES` grant holds the key (the most specific). Keys inside the media
store's own prefix are skipped: ingest announces its own writes, and a notification for
them would be a second job for the same audio. A record no tenant owns
is dead-lettered (`bucket_not_configured`), as is a body that is not an S3 event
(`malformed_bucket_event`); nothing is fetched for either.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote_plus

import structlog
from faststream.rabbit import RabbitBroker
from pydantic import TypeAdapter, ValidationError

from contracts.audio import AudioUploadedV1, AudioUri
from ingest.uploads import UploadedPublisher
from scribe_runtime.amqp import Delivery
from scribe_runtime.consumer import subscribe_deliveries
from scribe_runtime.messaging import dead_letter
from scribe_runtime.objectstore import MediaUrl, S3Location, tenant_of
from scribe_runtime.topology import BUCKET_EVENTS_QUEUE

log = structlog.get_logger(__name__)

PRODUCER: Final = "scribe-ingest/bucket-events"
MALFORMED: Final = "malformed_bucket_event"
NOT_CONFIGURED: Final = "bucket_not_configured"
JOB_NAMESPACE: Final = uuid.UUID("6f1d7a52-3a0e-5c8e-9b1e-2f4c5d6e7a80")
_URI: Final = TypeAdapter(AudioUri)


class BucketEventError(ValueError):
    """A notification that cannot become a job; `code` says why."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class CreatedObject:
    """One `ObjectCreated:*` record."""

    location: S3Location
    etag: str
    version_id: str | None
    size: int | None

    @property
    def job_id(self) -> uuid.UUID:
        """The same object version always makes the same job."""
        version = self.version_id or self.etag
        return uuid.uuid5(JOB_NAMESPACE, f"{self.location.bucket}\n{self.location.key}\n{version}")


def created_objects(body: bytes) -> list[CreatedObject]:
    """The `ObjectCreated:*` records of an S3 event body; others (deletes, tests) skipped."""
    try:
        document = json.loads(body)
        records = document["Records"]
        if not isinstance(records, list):
            raise TypeError("Records is not a list")
    except (ValueError, KeyError, TypeError) as exc:
        raise BucketEventError(MALFORMED, f"not an S3 event notification: {exc}") from None
    found = []
    for record in records:
        try:
            if not str(record["eventName"]).removeprefix("s3:").startswith("ObjectCreated:"):
                continue
            s3 = record["s3"]
            bucket = str(s3["bucket"]["name"])
            obj = s3["object"]
            key = unquote_plus(str(obj["key"]))  # S3 event keys are form-encoded
            location = S3Location.parse(f"s3://{bucket}/{key}")
            etag = str(obj.get("eTag") or obj.get("etag") or "").strip('"')
            version = obj.get("versionId") or None
            if not etag and not version:
                raise ValueError("the record has neither eTag nor versionId")
            size = obj.get("size")
        except (KeyError, TypeError, ValueError) as exc:
            raise BucketEventError(MALFORMED, f"a record is not usable: {exc}") from None
        found.append(CreatedObject(location, etag, str(version) if version else None, _size(size)))
    return found


def _size(value: Any) -> int | None:
    return int(value) if isinstance(value, int | str) and str(value).isdigit() else None


class BucketEvents:
    """Turns notifications into `audio.uploaded.v1`, by the tenants' configured prefixes."""

    def __init__(
        self,
        broker: RabbitBroker,
        publisher: UploadedPublisher,
        *,
        media: MediaUrl,
        grants: Mapping[str, Sequence[S3Location]],
    ) -> None:
        self._broker = broker
        self._publisher = publisher
        self._media = media
        self._grants = grants

    def events(self, body: bytes) -> list[AudioUploadedV1]:
        """Every job the notification asks for; `BucketEventError` if any record cannot be one."""
        events = []
        for created in created_objects(body):
            if self._media.s3 is not None and self._media.s3.contains(created.location):
                # Ingest's own writes (temp objects, content addresses, presigned uploads)
                # are announced by ingest itself; a notification for them would be a
                # second job for the same audio.
                log.info("bucket_event_ignored", reason="inside the media store's prefix")
                continue
            tenant = tenant_of(created.location, media=MediaUrl(), grants=self._grants)
            if tenant is None:
                raise BucketEventError(
                    NOT_CONFIGURED, f"no tenant is configured for {created.location.uri}"
                )
            job_id = created.job_id
            try:
                event = AudioUploadedV1(
                    event_id=uuid.uuid5(job_id, "audio.uploaded"),
                    job_id=job_id,
                    tenant_id=tenant,
                    producer=PRODUCER,
                    audio_uri=_URI.validate_python(created.location.uri),
                    size_bytes=created.size,
                )
            except ValidationError as exc:
                raise BucketEventError(MALFORMED, f"not a valid upload event: {exc}") from None
            events.append(event)
        return events

    async def on_delivery(self, delivery: Delivery) -> None:
        """Publish each job with confirms, then ack; refusals go to the DLQ with a code."""
        try:
            events = self.events(delivery.body)
        except BucketEventError as exc:
            await dead_letter(
                self._broker,
                delivery,
                queue=BUCKET_EVENTS_QUEUE.name,
                code=exc.code,
                reason=exc.reason,
            )
            return
        for event in events:
            # A failed publish raises: the notification is nacked and comes back.
            await self._publisher.publish(event)
            log.info(
                "bucket_object_accepted",
                job_id=str(event.job_id),
                tenant_id=event.tenant_id,
                size_bytes=event.size_bytes,
            )

    def subscribe(self) -> None:
        """Consume `ingest.bucket-events` on the broker (before it starts)."""
        subscribe_deliveries(
            self._broker,
            BUCKET_EVENTS_QUEUE,
            self.on_delivery,
            description="S3 event notifications; each ObjectCreated becomes audio.uploaded.v1",
        )

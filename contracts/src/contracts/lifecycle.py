"""Events about ending a job early or erasing it: requests, and the facts that follow.

A user (or the retention sweep) *requests*; the indexer, which holds the job's state,
*decides*, and announces the outcome. The requests are named as facts ("a cancel was
requested") rather than imperative commands: they go through the same topic exchange,
envelope and consumers as every other event, they are worth keeping for an audit trail,
and what they ask may not happen (a job that completed first is not cancelled).
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar, Literal
from uuid import UUID

from pydantic import Field

from contracts.envelope import Event


class DeletionReason(StrEnum):
    """Why a job is being erased."""

    REQUESTED = "requested"
    """Its tenant asked (`DELETE /v1/transcriptions/{id}`, `scribe delete`)."""
    RETENTION = "retention"
    """It finished longer ago than its tenant's `retain_days`."""


class TranscriptionCancelRequestedV1(Event):
    """Someone asked that a queued or running job stop; the indexer decides whether it does."""

    TYPE: ClassVar[str] = "transcription.cancel_requested"
    VERSION: ClassVar[int] = 1

    type: Literal["transcription.cancel_requested"] = "transcription.cancel_requested"
    version: Literal[1] = 1
    reason: str | None = Field(default=None, max_length=500, description="Free text, for people.")


class TranscriptionCancelledV1(Event):
    """The job was cancelled before it finished: no transcript will follow.

    Terminal: a `progress`, `completed` or `failed` event of the job arriving later does
    not change it. Its event id is derived from the request's, so a request applied twice
    announces the same event.
    """

    TYPE: ClassVar[str] = "transcription.cancelled"
    VERSION: ClassVar[int] = 1

    type: Literal["transcription.cancelled"] = "transcription.cancelled"
    version: Literal[1] = 1
    request_event_id: UUID = Field(description="The `transcription.cancel_requested` it answers.")


class TranscriptionDeleteRequestedV1(Event):
    """Someone (or the retention sweep) asked that a job and everything of it be erased."""

    TYPE: ClassVar[str] = "transcription.delete_requested"
    VERSION: ClassVar[int] = 1

    type: Literal["transcription.delete_requested"] = "transcription.delete_requested"
    version: Literal[1] = 1
    reason: DeletionReason = DeletionReason.REQUESTED


class TranscriptionDeletedV1(Event):
    """The job's media, transcript and segments are erased; only a tombstone remains.

    Downstream consumers holding a copy (a search index, a data lake) delete theirs on
    this event. Its event id is derived from the request's.
    """

    TYPE: ClassVar[str] = "transcription.deleted"
    VERSION: ClassVar[int] = 1

    type: Literal["transcription.deleted"] = "transcription.deleted"
    version: Literal[1] = 1
    request_event_id: UUID = Field(description="The `transcription.delete_requested` it answers.")
    reason: DeletionReason = DeletionReason.REQUESTED

"""Why a job ends without a transcript: each failure class has its own path.

- `JobFailure`: the job cannot succeed as submitted (not audio, corrupt, too long, missing
  or forbidden source, model failure). Published as `transcription.failed.v1`, then acked:
  never redelivered.
- `JobCancelled`: the worker is shutting down; the job goes back to the queue unacked.
- `CancelledByRequest`: the job's tenant cancelled (or deleted) it; the worker stops at
  the next segment, publishes nothing (the indexer announces the cancel) and acks.
- Anything else is unexpected: the handler raises, the message is nacked and redelivered,
  and the queue's delivery limit moves a crash loop to the dead-letter queue.
"""

from __future__ import annotations

from contracts.errors import ErrorCode


class JobFailure(Exception):
    """A permanent failure of this job, with a stable code and a message for humans."""

    def __init__(self, code: ErrorCode, message: str, *, retryable: bool = False) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable


class JobCancelled(Exception):
    """Inference stopped because the worker is shutting down; the job must be redelivered."""


class CancelledByRequest(Exception):
    """The job was cancelled or deleted by request: stop, ack, publish no outcome."""

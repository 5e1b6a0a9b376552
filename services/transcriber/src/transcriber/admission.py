"""Which uploads get work: the checks made before a transcriber spends anything on one.

- **Tenants.** Only tenants Scribe serves (`SCRIBE_TENANTS`, the same list the indexer
  seeds) get a transcription; any other upload is dead-lettered as `unknown_tenant` with no
  `started`, no outcome, nothing downstream.
- **Job definitions.** The first upload of a (tenant, job id) defines the job: its
  `job_fingerprint` (audio URI, sha256, options). A later upload with another fingerprint
  is dead-lettered as `conflicting_job` and the job is left as it was. This process knows
  the jobs whose outcome it confirmed; the indexer, which sees every job, refuses a
  conflicting upload (and any event carrying another fingerprint) in its own queue, so a
  conflicting upload that reaches a worker that never saw the job still changes nothing.
  Downstream hears at most one completion per job either way: the completion's event id
  is derived from the tenant and job, not from the upload (`service.outcome_event_id`).
- **Confirmed outcomes.** A redelivery of a job whose final outcome this process already
  confirmed (a worker that died between the confirm and the ack, a producer publishing
  twice) is acked without transcribing again: the outcome is already on the bus.

The memory is a bounded LRU per process (no database on the transcriber's path: a lookup
costs well under a microsecond, a query a millisecond and a dependency). A plain
`OrderedDict`: one bounded map does not warrant a dependency.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Final, Protocol
from uuid import UUID

from contracts.audio import AudioUploadedV1
from contracts.errors import RefusalCode
from scribe_runtime.amqp import Delivery

REMEMBERED_JOBS: Final = 10_000
"""Jobs whose outcome a process remembers (about 200 bytes each)."""


class DeadLetter(Protocol):
    """Moves a message to the queue's DLQ with a reason (the caller then acks it)."""

    async def __call__(self, delivery: Delivery, *, code: str, reason: str) -> None: ...


class Verdict(Enum):
    """What to do with an upload that was not refused."""

    RUN = "run"
    ALREADY_CONFIRMED = "already_confirmed"


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an upload is dead-lettered without any work."""

    code: RefusalCode
    reason: str


@dataclass(frozen=True, slots=True)
class _Confirmed:
    fingerprint: str
    final: bool


class Admission:
    """The per-process gate in front of the model."""

    def __init__(self, tenants: Iterable[str], *, remember: int = REMEMBERED_JOBS) -> None:
        self._tenants = frozenset(tenants)
        self._remember = remember
        self._confirmed: OrderedDict[tuple[str, UUID], _Confirmed] = OrderedDict()

    @property
    def tenants(self) -> frozenset[str]:
        """The tenants this deployment serves."""
        return self._tenants

    def check(self, event: AudioUploadedV1) -> Verdict | Refusal:
        """Refuse, skip or run `event`; looks at nothing but memory."""
        if event.tenant_id not in self._tenants:
            return Refusal(
                RefusalCode.UNKNOWN_TENANT,
                f"tenant {event.tenant_id!r} is not served by this deployment (SCRIBE_TENANTS)",
            )
        known = self._confirmed.get((event.tenant_id, event.job_id))
        if known is None:
            return Verdict.RUN
        self._confirmed.move_to_end((event.tenant_id, event.job_id))
        if known.fingerprint != event.job_fingerprint():
            return Refusal(
                RefusalCode.CONFLICTING_JOB,
                f"job {event.job_id} was defined by an earlier upload with other audio or "
                "options; this upload is refused and the job left as it was",
            )
        return Verdict.ALREADY_CONFIRMED if known.final else Verdict.RUN

    def confirmed(self, event: AudioUploadedV1, *, final: bool) -> None:
        """Remember that `event`'s outcome is confirmed; `final`: running it again is waste
        (completed, or failed for good), not a retry that could turn out otherwise."""
        key = (event.tenant_id, event.job_id)
        self._confirmed[key] = _Confirmed(event.job_fingerprint(), final)
        self._confirmed.move_to_end(key)
        while len(self._confirmed) > self._remember:
            self._confirmed.popitem(last=False)

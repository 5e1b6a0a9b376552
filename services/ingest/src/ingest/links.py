"""Where to follow a job: the one shape of `links` in every answer that names a job.

The submission's 202, a job, a job in a listing and a search hit all carry the same
`JobLinks`, built here, so a client follows a job the same way wherever it met it.
"""

from __future__ import annotations

from typing import Final
from uuid import UUID

from pydantic import BaseModel, Field

EXPORT_FORMATS: Final = ("json", "txt", "srt", "vtt")

_EXAMPLE: Final = "/v1/transcriptions/4b0c7a3e-2a53-4c4f-9a0e-9e8b2f1c5d11"


def job_path(job_id: UUID) -> str:
    """The job's URL path (also the 202's `Location`)."""
    return f"/v1/transcriptions/{job_id}"


class JobLinks(BaseModel):
    """Where to follow the job."""

    self: str = Field(description="The job: status, progress, error.", examples=[_EXAMPLE])
    transcript: str = Field(
        description="Its transcript as JSON; `409 transcript_not_ready` until completed.",
        examples=[f"{_EXAMPLE}/transcript.json"],
    )
    transcript_json: str | None = Field(
        default=None, description="Once completed: the JSON export."
    )
    transcript_txt: str | None = Field(default=None, description="Once completed: plain text.")
    transcript_srt: str | None = Field(default=None, description="Once completed: SubRip.")
    transcript_vtt: str | None = Field(default=None, description="Once completed: WebVTT.")


def job_links(job_id: UUID, status: str) -> JobLinks:
    """The links of a job in `status`: the exports appear once it is completed."""
    if status != "completed":
        base = job_path(job_id)
        return JobLinks(self=base, transcript=f"{base}/transcript.json")
    return JobLinks(**completed_job_links(job_id))


def completed_job_links(job_id: UUID) -> dict[str, str]:
    """A completed job's `JobLinks`, as the plain values (a search page serialises them
    without building the model: `read_models.search_page_json`)."""
    base = job_path(job_id)
    transcript = f"{base}/transcript.json"
    return {
        "self": base,
        "transcript": transcript,
        "transcript_json": transcript,
        "transcript_txt": f"{base}/transcript.txt",
        "transcript_srt": f"{base}/transcript.srt",
        "transcript_vtt": f"{base}/transcript.vtt",
    }

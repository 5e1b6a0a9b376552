"""The links of a job: the exports appear, one per export format, once it is completed."""

from __future__ import annotations

from uuid import uuid4

import pytest

from ingest.links import EXPORT_FORMATS, job_links, job_path


def test_a_completed_job_links_every_export_format() -> None:
    job = uuid4()
    links = job_links(job, "completed").model_dump()
    base = job_path(job)
    assert links["self"] == base
    assert links["transcript"] == f"{base}/transcript.json"
    for fmt in EXPORT_FORMATS:
        assert links[f"transcript_{fmt}"] == f"{base}/transcript.{fmt}"
    assert set(links) == {"self", "transcript", *(f"transcript_{fmt}" for fmt in EXPORT_FORMATS)}


@pytest.mark.parametrize("status", ["queued", "transcribing", "failed", "cancelled"])
def test_a_job_not_completed_links_no_export(status: str) -> None:
    job = uuid4()
    links = job_links(job, status).model_dump()
    assert links == {
        "self": job_path(job),
        "transcript": f"{job_path(job)}/transcript.json",
        **{f"transcript_{fmt}": None for fmt in EXPORT_FORMATS},
    }

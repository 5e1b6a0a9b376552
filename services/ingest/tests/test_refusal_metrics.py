"""Every refused request is counted by status and code, whichever layer refused it."""

from __future__ import annotations

import httpx
from prometheus_client import REGISTRY

from services.ingest.tests import samples
from services.ingest.tests.test_api import Harness
from services.ingest.tests.test_api import harness as harness  # the fixture


def refused(status: int, code: str) -> float:
    labels = {"status": str(status), "code": code}
    return REGISTRY.get_sample_value("scribe_ingest_requests_refused_total", labels) or 0


async def test_refusals_of_every_layer_are_counted(harness: Harness) -> None:
    cases: list[tuple[int, str]] = []
    before = {
        key: refused(*key)
        for key in [
            (401, "unauthenticated"),
            (422, "validation_error"),
            (503, "broker_unavailable"),
            (404, "not_found"),
        ]
    }
    http: httpx.AsyncClient = harness.client
    # Authentication (a dependency), a header FastAPI validates, the broker, routing.
    r = await http.get("/v1/transcriptions", headers={"Authorization": "Bearer wrong"})
    cases.append((r.status_code, r.json()["code"]))
    r = await harness.upload(samples.wav_bytes(1.0), headers={"Idempotency-Key": "a b"})
    cases.append((r.status_code, r.json()["code"]))
    harness.publisher.fail = True
    r = await harness.upload(samples.wav_bytes(1.0))
    cases.append((r.status_code, r.json()["code"]))
    r = await http.get("/no/such/route")
    cases.append((r.status_code, r.json()["code"]))
    assert cases == list(before)
    for key, count in before.items():
        assert refused(*key) == count + 1, key

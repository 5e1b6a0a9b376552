"""The health endpoint beside workers answers liveness, readiness and metrics over HTTP."""

from __future__ import annotations

import httpx
from prometheus_client import CollectorRegistry, Counter

from scribe_runtime.health import HealthServer


async def test_health_ready_and_metrics() -> None:
    registry = CollectorRegistry()
    jobs = Counter("scribe_test_jobs_total", "Jobs.", registry=registry)
    jobs.inc(3)
    broker_up = True

    async def broker() -> bool:
        return broker_up

    async def broken() -> bool:
        raise RuntimeError("boom")

    server = HealthServer("127.0.0.1", 0, {"broker": broker}, registry)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            ready = await client.get("/readyz")
            assert ready.status_code == 200
            assert ready.json()["checks"] == {"broker": True}
            broker_up = False
            not_ready = await client.get("/readyz")
            assert not_ready.status_code == 503
            assert not_ready.json() == {"status": "not_ready", "checks": {"broker": False}}
            metrics = await client.get("/metrics")
            assert "scribe_test_jobs_total 3.0" in metrics.text
            assert (await client.get("/nope")).status_code == 404
            assert (await client.post("/healthz")).status_code == 405
        server.checks["other"] = broken
        assert await server.readiness() == {"broker": False, "other": False}
    finally:
        await server.stop()

"""The worker shell: health beside the broker, a graceful stop on SIGTERM, lifecycle lines."""

from __future__ import annotations

import asyncio
import os
import signal

import httpx
import pytest
import structlog
from faststream.rabbit import TestRabbitBroker

from scribe_runtime.messaging import make_broker
from scribe_runtime.worker import Worker, producer_name


async def test_sigterm_stops_the_worker_gracefully_and_health_answers_meanwhile() -> None:
    broker = make_broker("amqp://guest:guest@127.0.0.1:5672/", service="scribe-test")
    handed_back: list[bool] = []

    async def database() -> bool:
        return False

    async def after_stop() -> dict[str, object]:
        handed_back.append(True)
        return {"handed_back": True}

    async with TestRabbitBroker(broker):
        worker = Worker("scribe-test", broker, health_port=0, checks={"database": database})
        with structlog.testing.capture_logs() as lines:
            task = asyncio.create_task(worker.run(after_stop=after_stop))
            for _ in range(200):
                if any(line["event"] == "health_endpoint_listening" for line in lines):
                    break
                await asyncio.sleep(0.01)
            port = next(ln["port"] for ln in lines if ln["event"] == "health_endpoint_listening")
            for _ in range(200):
                if any(line["event"] == "test_ready" for line in lines):
                    break
                await asyncio.sleep(0.01)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                assert (await client.get("/healthz")).status_code == 200
                ready = await client.get("/readyz")
                assert ready.status_code == 503  # the worker's own check says no
                assert ready.json()["checks"]["database"] is False
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.wait_for(task, 10)
    events = [line["event"] for line in lines]
    assert [e for e in events if e.startswith("test_")] == [
        "test_ready",
        "test_stopping",
        "test_stopped",
    ]
    assert handed_back == [True]
    assert next(ln for ln in lines if ln["event"] == "test_stopped")["handed_back"] is True
    with pytest.raises(httpx.ConnectError):  # the endpoint went with the worker
        async with httpx.AsyncClient() as client:
            await client.get(f"http://127.0.0.1:{port}/healthz")


def test_producer_name_is_service_and_installed_version() -> None:
    assert producer_name("scribe-transcriber").startswith("scribe-transcriber/")
    assert producer_name("scribe-no-such-dist") == "scribe-no-such-dist/0+unknown"

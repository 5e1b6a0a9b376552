"""A small client for the ingest HTTP API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from scribe_cli.settings import CliSettings


class ApiError(Exception):
    """The API answered with an error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        body = response.json()
        code, message = str(body.get("code", "http_error")), str(body.get("message", ""))
    except ValueError:
        code, message = "http_error", response.text[:500]
    raise ApiError(response.status_code, code, message)


class ScribeClient:
    """Sync client: the CLI does one thing at a time and prints as it goes."""

    def __init__(self, settings: CliSettings, timeout: float = 60.0) -> None:
        headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
        self.http = httpx.Client(base_url=settings.api_url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def submit(
        self,
        path: Path,
        *,
        language: str | None,
        model: str | None,
        word_timestamps: bool,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        data: dict[str, str] = {"word_timestamps": "true" if word_timestamps else "false"}
        if language:
            data["language"] = language
        if model:
            data["model"] = model
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        with path.open("rb") as handle:
            response = self.http.post(
                "/v1/transcriptions",
                files={"file": (path.name, handle, "application/octet-stream")},
                data=data,
                headers=headers,
                timeout=None,
            )
        _raise_for(response)
        result: dict[str, Any] = response.json()
        return result

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.http.get(f"/v1/transcriptions/{job_id}")
        _raise_for(response)
        result: dict[str, Any] = response.json()
        return result

    def cancel(self, job_id: str) -> dict[str, Any]:
        response = self.http.post(f"/v1/transcriptions/{job_id}/cancel")
        _raise_for(response)
        result: dict[str, Any] = response.json()
        return result

    def delete(self, job_id: str) -> dict[str, Any]:
        response = self.http.delete(f"/v1/transcriptions/{job_id}")
        _raise_for(response)
        result: dict[str, Any] = response.json()
        return result

    def export(self, job_id: str, fmt: str) -> str:
        response = self.http.get(f"/v1/transcriptions/{job_id}/transcript.{fmt}")
        _raise_for(response)
        return response.text

    def search(self, query: str, limit: int = 20) -> dict[str, Any]:
        response = self.http.get("/v1/search", params={"q": query, "limit": limit})
        _raise_for(response)
        result: dict[str, Any] = response.json()
        return result

    def ready(self) -> bool:
        try:
            return self.http.get("/readyz", timeout=2).is_success
        except httpx.HTTPError:
            return False

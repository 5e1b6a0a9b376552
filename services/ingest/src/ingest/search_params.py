"""`GET /v1/search`'s query parameters: one model, validated in one call.

FastAPI validates each declared query parameter on its own (its annotation inspected, its
value looked up and validated through its own field) on every request: ~0.14 ms for the
search route's seven, measured in process, of the ~2.5 CPU-ms the API spends per search,
which issue 20's HTTP-over-SQL ratio counts (bench/README.md). `search_params` reads the
query string into `SearchParams` with one pydantic-core validation instead. The same rules
hold, and the same 422 (`RequestValidationError`, each error's `loc` under `query`, as
FastAPI reports them); the OpenAPI document lists the same parameters as the route's former
seven-`Query` declaration did (`test_search_params.py` compares both, and 21 query
strings' answers, with that declaration).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ingest.cursors import MAX_CURSOR_CHARS


class SearchParams(BaseModel):
    """What a search asks for."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    q: str = Field(
        min_length=1,
        max_length=500,
        description='Web-search syntax: words (all must match), "a phrase", `or`, `-excluded`.',
        examples=['"fellow americans" -taxes'],
    )
    language: str | None = Field(default=None, pattern=r"^[a-z]{2,3}$")
    speaker: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Only segments of this speaker (diarized jobs), e.g. `SPEAKER_00`.",
        examples=["SPEAKER_00"],
    )
    created_after: datetime | None = Field(default=None, description="Job created at or after.")
    created_before: datetime | None = Field(default=None, description="Job created before.")
    limit: int = Field(default=20, ge=1, le=100)
    cursor: str | None = Field(default=None, max_length=MAX_CURSOR_CHARS)


async def search_params(request: Request) -> SearchParams:
    """The request's query string as `SearchParams` (a repeated name: its last value, as
    FastAPI takes it); a value out of bounds is the same 422 FastAPI would give."""
    try:
        return SearchParams.model_validate(dict(request.query_params))
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("query", *error["loc"])} for error in exc.errors()]
        ) from None


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """The OpenAPI `parameters` of `model`'s fields, in FastAPI's own form."""
    properties = model.model_json_schema()["properties"]
    parameters = []
    for name, field in model.model_fields.items():
        parameter: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": field.is_required(),
            "schema": properties[name],
        }
        if field.description:
            parameter["description"] = field.description
        parameters.append(parameter)
    return parameters


SEARCH_OPENAPI: Final = {"parameters": _query_parameters(SearchParams)}
"""The route's `openapi_extra`: `search_params` reads the request itself, so FastAPI
would otherwise document no parameters."""

"""`SCRIBE_INDEXER_RETAIN_DAYS`: `tenant=days` pairs; unset or empty keeps every job."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from indexer.settings import IndexerSettings


def test_pairs_are_read_per_tenant_and_empty_means_forever(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SCRIBE_INDEXER_RETAIN_DAYS", "acme=30, default=7")
    assert IndexerSettings().retain_days == {"acme": 30, "default": 7}
    monkeypatch.setenv("SCRIBE_INDEXER_RETAIN_DAYS", "")
    assert IndexerSettings().retain_days == {}


@pytest.mark.parametrize("value", ["acme", "acme=0", "acme=-1", "acme=soon", "bad tenant=3"])
def test_a_malformed_window_stops_start_up(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("SCRIBE_INDEXER_RETAIN_DAYS", value)
    with pytest.raises(ValidationError):
        IndexerSettings()

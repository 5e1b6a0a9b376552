"""API key configuration: digests, keys files, the development fallback, `hash-key`."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
import structlog

from ingest.auth import (
    DEV_API_KEY,
    ApiKeyConfigError,
    ApiKeyring,
    hash_api_key,
    parse_keys_file,
)
from ingest.main import main


def test_hash_is_sha256_hex() -> None:
    assert hash_api_key("abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_keys_file_lines_comments_and_errors(tmp_path: Path) -> None:
    digest = hash_api_key("k1")
    assert parse_keys_file(f"# keys\n\n{digest} acme  # ops team\n") == {digest: "acme"}
    for bad in (f"{digest}", "nothex acme", f"{digest} bad/tenant", f"{digest} a b"):
        with pytest.raises(ApiKeyConfigError) as info:
            parse_keys_file(bad, "keys.txt")
        assert "keys.txt:1" in str(info.value)


def test_configured_keys_replace_the_development_key(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"{hash_api_key('from-file')} globex\n")
    ring = ApiKeyring.load({hash_api_key("from-env"): "acme"}, keys_file)
    assert not ring.insecure
    assert ring.tenant_for("from-env") == "acme"
    assert ring.tenant_for("from-file") == "globex"
    assert ring.tenant_for(DEV_API_KEY) is None
    with pytest.raises(ApiKeyConfigError):
        ApiKeyring.load({}, tmp_path / "missing")
    with pytest.raises(ApiKeyConfigError):
        ApiKeyring.load({"not-a-digest": "acme"}, None)


def test_without_keys_only_the_dev_key_works_and_it_is_said_loudly() -> None:
    ring = ApiKeyring.load({}, None)
    assert ring.insecure
    assert ring.tenant_for(DEV_API_KEY) == "default"
    assert ring.tenant_for("anything-else") is None
    with structlog.testing.capture_logs() as logs:
        ring.warn_if_insecure()
    [line] = logs
    assert line["event"] == "insecure_dev_api_key_enabled"
    assert line["log_level"] == "warning"
    assert "INSECURE" in line["message"]


def test_hash_key_prints_a_new_key_and_entries_that_accept_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    main(["hash-key", "--tenant", "acme"])
    out = capsys.readouterr().out.splitlines()
    key = out[0].rsplit(" ", 1)[1]
    digest, tenant = out[1].removeprefix("keys file line: ").split()
    entry = json.loads(out[2].removeprefix("SCRIBE_INGEST_API_KEYS entry: "))
    assert key.startswith("scribe_")
    assert len(key) > 40
    assert (digest, tenant) == (hash_api_key(key), "acme")
    assert ApiKeyring.load(entry, None).tenant_for(key) == "acme"


def test_hash_key_hashes_a_key_from_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("my-existing-key\n"))
    main(["hash-key", "--tenant", "acme", "--stdin"])
    out = capsys.readouterr().out
    assert "my-existing-key" not in out  # never echoed
    assert f"{hash_api_key('my-existing-key')} acme" in out
    with pytest.raises(SystemExit):
        main(["hash-key", "--tenant", "bad/tenant"])

"""API key configuration: digests, keys files, the development fallback, `hash-key`."""

from __future__ import annotations

import io
import json
import os
import subprocess
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


def test_a_key_of_a_tenant_the_workers_do_not_serve_is_refused() -> None:
    ring = ApiKeyring.load({hash_api_key("a"): "acme", hash_api_key("b"): "beta"}, None)
    ring.check_served(("default", "acme", "beta"))
    with pytest.raises(ApiKeyConfigError) as info:
        ring.check_served(("default", "acme"))
    assert str(info.value).startswith(
        "API keys of tenant 'beta': not in SCRIBE_TENANTS (default,acme), so every worker"
    )
    assert "'acme'" not in str(info.value)
    with pytest.raises(ApiKeyConfigError) as info:
        ApiKeyring.load({}, None).check_served(("acme",))
    assert "the development key's tenant 'default': not in SCRIBE_TENANTS" in str(info.value)


def test_scribe_ingest_refuses_unserved_tenants_in_one_line_before_connecting(
    tmp_path: Path,
) -> None:
    """Before: a 202 for every upload of `beta`, each dead-lettered `unknown_tenant` by the
    workers and `404` for good. Now the server does not start, and says why."""
    keys = {hash_api_key("a"): "acme", hash_api_key("b"): "beta"}
    env = {
        "PATH": "/usr/bin:/bin",
        "SCRIBE_INGEST_API_KEYS": json.dumps(keys),
        "SCRIBE_TENANTS": "default,acme",
        # Nothing listens here: the refusal must come before any connection.
        "SCRIBE_AMQP_URL": "amqp://guest:guest@127.0.0.1:1/",
        "SCRIBE_MEDIA_ROOT": str(tmp_path),
        "SCRIBE_LOG_FORMAT": "console",
    }
    done = subprocess.run(
        [sys.executable, "-c", "from ingest.main import main; main()"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == os.EX_CONFIG
    assert "Traceback" not in done.stderr
    [line] = [x for x in done.stderr.splitlines() if "configuration error" in x]
    assert line.startswith("scribe-ingest: configuration error: API keys of tenant 'beta': ")
    assert "Add it to SCRIBE_TENANTS" in line

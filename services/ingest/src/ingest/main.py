"""The `scribe-ingest` command: serve the app (`ingest.app`), or make an API key entry."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

import uvicorn

from ingest.app import create_app
from ingest.auth import ApiKeyConfigError, ApiKeyring, check_entry, hash_api_key, new_api_key
from ingest.server import server_config
from ingest.settings import IngestSettings
from scribe_runtime.logging import configure_logging
from scribe_runtime.settings import SharedSettings

SERVICE = "ingest"


def hash_key_command(tenant: str, key_from_stdin: bool) -> None:
    """Print a keys-file line and a `SCRIBE_INGEST_API_KEYS` entry for a (new) key."""
    if key_from_stdin:
        key, shown = sys.stdin.readline().strip(), False
        if not key:
            raise SystemExit("no key on stdin")
    else:
        key, shown = new_api_key(), True
    digest = hash_api_key(key)
    if shown:
        print(f"api key (give it to the client; only its hash is stored): {key}")
    print(f"keys file line: {digest} {tenant}")
    print(f"SCRIBE_INGEST_API_KEYS entry: {json.dumps({digest: tenant})}")


def main(argv: Sequence[str] | None = None) -> None:
    """`scribe-ingest`: serve the API on `SCRIBE_INGEST_HOST:SCRIBE_INGEST_PORT`."""
    parser = argparse.ArgumentParser(
        prog="scribe-ingest",
        description="Scribe's HTTP API: uploads become audio.uploaded.v1 events; reads.",
        epilog="Configured by environment variables (SCRIBE_*, SCRIBE_INGEST_*); see README.",
    )
    commands = parser.add_subparsers(dest="command", metavar="{serve,hash-key}")
    commands.add_parser("serve", help="serve the API (the default)")
    hash_key = commands.add_parser(
        "hash-key",
        help="make an API key entry for a tenant",
        description="Generate a key (or hash one read from stdin with --stdin) and print "
        "the line for SCRIBE_INGEST_API_KEYS_FILE and the SCRIBE_INGEST_API_KEYS entry.",
    )
    hash_key.add_argument("--tenant", required=True, type=_tenant_id, help="the key's tenant")
    hash_key.add_argument("--stdin", action="store_true", help="hash the key given on stdin")
    args = parser.parse_args(argv)
    if args.command == "hash-key":
        hash_key_command(args.tenant, args.stdin)
        return
    shared = SharedSettings()
    settings = IngestSettings()
    configure_logging(SERVICE, shared.log_level, shared.log_format)
    check_keys(shared, settings)
    uvicorn.Server(server_config(create_app(shared, settings), settings)).run()


def check_keys(shared: SharedSettings, settings: IngestSettings) -> None:
    """Exit `EX_CONFIG` (78) with one line on stderr when the API keys cannot be served.

    The app checks the same when it starts (`ingest.container`); checked here first so a
    misconfiguration reads as one sentence rather than a traceback from uvicorn's lifespan,
    and `scribe up` knows from the code not to restart it.
    """
    try:
        ApiKeyring.load(settings.api_keys, settings.api_keys_file).check_served(shared.tenants)
    except ApiKeyConfigError as exc:
        print(f"scribe-ingest: configuration error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(os.EX_CONFIG) from None


def _tenant_id(value: str) -> str:
    try:
        return check_entry("0" * 64, value, "--tenant")[1]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


if __name__ == "__main__":
    main()

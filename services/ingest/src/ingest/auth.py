"""API keys: `Authorization: Bearer <key>` maps a caller to its tenant (`ingest.deps.Tenant`).

Keys are stored as SHA-256 hex digests, never in clear. A plain hash and not a slow one
(scrypt, argon2): API keys are long random strings (`new_api_key` draws 256 bits), so there
is no dictionary to guess from and a fast hash is as hard to reverse as a slow one, while a
slow hash would cost tens of milliseconds of CPU on every request. A password typed by a
person would need the slow hash; these are not passwords. Lookup is a dict access on the
digest: the time it takes depends on the digest of the presented key, which tells an
attacker nothing about a stored key.

Where keys come from: `SCRIBE_INGEST_API_KEYS` (JSON `{"<sha256-hex>": "<tenant>"}`) and/or
`SCRIBE_INGEST_API_KEYS_FILE` (lines `<sha256-hex> <tenant>`, `#` comments), merged. With
neither, the development key `dev-insecure-key` (tenant `default`) works, and start-up says
so loudly: it is public, so it must never reach a deployment anyone else can call.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import structlog

log = structlog.get_logger(__name__)

DEV_API_KEY: Final = "dev-insecure-key"
"""The development key, accepted only when no key is configured."""
DEV_TENANT: Final = "default"
KEY_PREFIX: Final = "scribe_"

_DIGEST: Final = re.compile(r"^[0-9a-f]{64}$")
_TENANT: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ApiKeyConfigError(ValueError):
    """The configured keys are unusable (bad digest, bad tenant, unreadable file, a tenant
    no worker serves)."""


def hash_api_key(key: str) -> str:
    """The SHA-256 hex digest stored for a key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_api_key() -> str:
    """A fresh key: 256 random bits, URL-safe, recognisable by its prefix in secret scanners."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def check_entry(digest: str, tenant: str, where: str) -> tuple[str, str]:
    """One validated `(digest, tenant)` pair; `where` names it in the error."""
    digest = digest.strip().lower()
    if not _DIGEST.fullmatch(digest):
        raise ApiKeyConfigError(f"{where}: not a SHA-256 hex digest (64 hex characters)")
    if not _TENANT.fullmatch(tenant):
        raise ApiKeyConfigError(f"{where}: tenant {tenant!r} is not a valid tenant id")
    return digest, tenant


def parse_keys_file(text: str, source: str = "keys file") -> dict[str, str]:
    """`<sha256-hex> <tenant>` per line; blank lines and `#` comments ignored."""
    entries: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) != 2:
            raise ApiKeyConfigError(f"{source}:{number}: expected '<sha256-hex> <tenant>'")
        digest, tenant = check_entry(fields[0], fields[1], f"{source}:{number}")
        entries[digest] = tenant
    return entries


@dataclass(frozen=True, slots=True)
class ApiKeyring:
    """Key digests and their tenants; `insecure` when only the development key works."""

    tenants_by_digest: Mapping[str, str]
    insecure: bool = False

    @classmethod
    def load(cls, configured: Mapping[str, str], keys_file: Path | None) -> ApiKeyring:
        """Merge the settings' keys and the keys file; the development key if there are none."""
        entries = dict(
            check_entry(digest, tenant, "SCRIBE_INGEST_API_KEYS")
            for digest, tenant in configured.items()
        )
        if keys_file is not None:
            try:
                text = keys_file.read_text(encoding="utf-8")
            except OSError as exc:
                raise ApiKeyConfigError(
                    f"cannot read the API keys file {keys_file}: {exc.strerror}"
                ) from None
            entries.update(parse_keys_file(text, str(keys_file)))
        if not entries:
            return cls({hash_api_key(DEV_API_KEY): DEV_TENANT}, insecure=True)
        return cls(entries)

    def check_served(self, served: Collection[str]) -> None:
        """Refuse keys whose tenant `SCRIBE_TENANTS` leaves out.

        Every worker dead-letters an upload of a tenant it does not serve
        (`unknown_tenant`), so such a key would get a `202` for each upload and then a
        `404` for the job forever. Said once, at start, naming the setting to change.
        """
        unserved = sorted(set(self.tenants_by_digest.values()) - set(served))
        if not unserved:
            return
        one = len(unserved) == 1
        who = "the development key's tenant" if self.insecure else "API keys of tenant"
        raise ApiKeyConfigError(
            f"{who}{'' if one or self.insecure else 's'} {', '.join(map(repr, unserved))}: "
            f"not in SCRIBE_TENANTS ({','.join(served)}), so every worker would refuse "
            f"{'its' if one else 'their'} jobs (unknown_tenant) after ingest accepted them. "
            f"Add {'it' if one else 'them'} to SCRIBE_TENANTS, which every service reads "
            "(scribe up and the compose file hand it to each one)."
        )

    def tenant_for(self, key: str) -> str | None:
        """The key's tenant, or None for an unknown key."""
        return self.tenants_by_digest.get(hash_api_key(key))

    def warn_if_insecure(self) -> None:
        """Say, loudly, that anyone who knows the public development key is let in."""
        if self.insecure:
            log.warning(
                "insecure_dev_api_key_enabled",
                message=(
                    "INSECURE: no API keys are configured, so the public development key "
                    f"{DEV_API_KEY!r} is accepted for tenant {DEV_TENANT!r}. Set "
                    "SCRIBE_INGEST_API_KEYS or SCRIBE_INGEST_API_KEYS_FILE before anyone "
                    "else can reach this server (scribe-ingest hash-key makes entries)."
                ),
                tenant=DEV_TENANT,
            )

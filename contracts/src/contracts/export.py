"""Export every event's JSON Schema to `contracts/schemas/` (`scribe-export-schemas`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from contracts.examples import EXAMPLES
from contracts.routing import ALL_EVENT_CLASSES

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"


def render_schemas() -> dict[str, str]:
    """Every exported file's name and exact text, generated from the models."""
    files: dict[str, str] = {}
    for cls in ALL_EVENT_CLASSES:
        schema: dict[str, Any] = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://scribe.dev/schemas/{cls.routing_key()}.json",
            **cls.model_json_schema(mode="validation"),
        }
        schema["examples"] = [EXAMPLES[cls].model_dump(mode="json")]
        files[f"{cls.routing_key()}.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return files


def main(argv: list[str] | None = None) -> int:
    """Write (or with --check, compare) the exported schemas."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=SCHEMA_DIR)
    parser.add_argument("--check", action="store_true", help="fail if any file is stale")
    args = parser.parse_args(argv)
    out: Path = args.out
    rendered = render_schemas()
    stale = [
        name
        for name, text in rendered.items()
        if not (out / name).exists() or (out / name).read_text() != text
    ]
    extra = sorted(p.name for p in out.glob("*.json") if p.name not in rendered)
    if args.check:
        for name in [*stale, *extra]:
            print(f"stale schema: {out / name}", file=sys.stderr)
        return 1 if stale or extra else 0
    out.mkdir(parents=True, exist_ok=True)
    for name, text in rendered.items():
        (out / name).write_text(text)
    for name in extra:
        (out / name).unlink()
    print(f"wrote {len(rendered)} schemas to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

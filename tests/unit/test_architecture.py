"""The rules ARCHITECTURE.md states, checked on the source so a change that breaks one fails.

- services never import each other (nor the CLI): they meet only through events;
- `contracts` depends on pydantic and the standard library only;
- `scribe_runtime` imports no service and no CLI;
- only the indexer writes PostgreSQL: no SQL write statement appears in any other shipped
  package (ingest reads through a SELECT-only role, which enforces it at run time too).
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {path.parent.name: path for path in sorted(ROOT.glob("services/*/src/*/__init__.py"))}
PACKAGES: dict[str, Path] = {
    "contracts": ROOT / "contracts" / "src" / "contracts",
    "scribe_runtime": ROOT / "runtime" / "src" / "scribe_runtime",
    "scribe_cli": ROOT / "cli" / "src" / "scribe_cli",
    **{name: init.parent for name, init in SERVICES.items()},
}
SQL_WRITE = re.compile(
    r"\b(INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|TRUNCATE\s|CREATE\s+TABLE|"
    r"ALTER\s+TABLE|DROP\s+TABLE)",
    re.IGNORECASE,
)


def _top_level_imports(package: Path) -> dict[str, set[str]]:
    """module file → the top-level names it imports (absolute imports only)."""
    found: dict[str, set[str]] = {}
    for path in package.rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


def _offenders(package: str, forbidden: set[str]) -> dict[str, list[str]]:
    return {
        path: sorted(names & forbidden)
        for path, names in _top_level_imports(PACKAGES[package]).items()
        if names & forbidden
    }


def test_the_services_are_found() -> None:
    assert {"ingest", "transcriber", "indexer"} <= set(SERVICES)


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_a_service_imports_no_other_service_and_not_the_cli(service: str) -> None:
    others = (set(SERVICES) - {service}) | {"scribe_cli"}
    assert _offenders(service, others) == {}


def test_contracts_depend_on_pydantic_and_the_standard_library_only() -> None:
    allowed = set(sys.stdlib_module_names) | {"pydantic", "pydantic_core", "contracts"}
    offenders = {
        path: sorted(names - allowed)
        for path, names in _top_level_imports(PACKAGES["contracts"]).items()
        if names - allowed
    }
    assert offenders == {}


def test_the_runtime_imports_no_service_and_not_the_cli() -> None:
    assert _offenders("scribe_runtime", set(SERVICES) | {"scribe_cli"}) == {}


@pytest.mark.parametrize("package", sorted(set(PACKAGES) - {"indexer"}))
def test_only_the_indexer_writes_postgresql(package: str) -> None:
    writes = {
        str(path.relative_to(ROOT)): SQL_WRITE.findall(path.read_text())
        for path in PACKAGES[package].rglob("*")
        if path.suffix in {".py", ".sql"}
    }
    assert {path: found for path, found in writes.items() if found} == {}


def test_the_sql_write_check_can_fail() -> None:
    assert SQL_WRITE.search("INSERT INTO jobs (id) VALUES ($1)")
    assert SQL_WRITE.search("update jobs set status = 'x'")
    assert not SQL_WRITE.search("SELECT * FROM jobs WHERE status = 'truncated'")

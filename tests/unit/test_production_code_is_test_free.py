"""No shipped module imports the tests' code: test-only behaviour cannot reach a deployment."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = [
    ROOT / "contracts" / "src",
    ROOT / "runtime" / "src",
    ROOT / "cli" / "src",
    *sorted((ROOT / "services").glob("*/src")),
]
TEST_ONLY = ("tests", "bench")


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_no_shipped_module_imports_tests_or_bench() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            m for m in imported_modules(path) if m.split(".")[0] in TEST_ONLY
        )
        for root in SHIPPED
        for path in root.rglob("*.py")
    }
    assert len(SHIPPED) >= 6
    assert {path: mods for path, mods in offenders.items() if mods} == {}

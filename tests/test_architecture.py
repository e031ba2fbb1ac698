"""The dependency direction deploy -> {stream, model, store} is part of the build."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = {"stream", "model", "store"}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return [n.split(".")[0] for n in names]


def test_core_packages_never_import_each_other_or_deploy() -> None:
    violations = []
    for package in sorted(CORE):
        for path in sorted((ROOT / package).rglob("*.py")):
            for root in _imports(path):
                if root in (CORE | {"deploy"}) - {package}:
                    violations.append(f"{path.relative_to(ROOT)} imports {root}")
    assert violations == []


def test_only_deploy_reads_the_environment_or_installs_signals() -> None:
    offenders = []
    for package in sorted(CORE):
        for path in sorted((ROOT / package).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            for needle in ("os.environ", "os.getenv", "signal.signal", "prometheus_client"):
                if needle in text:
                    offenders.append(f"{path.relative_to(ROOT)} uses {needle}")
    assert offenders == []

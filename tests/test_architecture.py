"""The dependency direction deploy -> {stream, model, store} is part of the build."""

from __future__ import annotations

import ast
import re
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


def _sources() -> list[Path]:
    return [
        p for package in sorted(CORE | {"deploy"}) for p in sorted((ROOT / package).rglob("*.py"))
    ]


def test_no_file_over_400_lines_and_no_function_over_60() -> None:
    long_files, long_functions = [], []
    for path in _sources():
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > 400:
            long_files.append(f"{path.relative_to(ROOT)}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > 60:
                    long_functions.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert (long_files, long_functions) == ([], [])


def test_only_public_torch_apis() -> None:
    private = re.compile(r"torch\._[a-z]\w*|torch\.ops\.aten")
    offenders = [
        f"{path.relative_to(ROOT)}: {match.group(0)}"
        for path in _sources()
        for match in private.finditer(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_every_deploy_module_sits_in_a_sub_package() -> None:
    allowed = {"__init__.py", "cli.py", "wiring.py"}
    loose = sorted(p.name for p in (ROOT / "deploy").glob("*.py") if p.name not in allowed)
    assert loose == []


def test_compiled_kernels_live_in_one_module() -> None:
    compiling = sorted(
        str(path.relative_to(ROOT)) for path in _sources() if "numba" in _imports(path)
    )
    assert compiling == ["model/kernels.py"]

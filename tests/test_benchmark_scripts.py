"""Every name the stand-alone scripts in benchmarks/ import from xvit exists.

The scripts are run by hand, not by the suite, and most of their imports sit inside
functions; a module split can leave one pointing at a name that moved. This walks each
script's syntax tree and resolves every `from xvit... import NAME` and `import xvit...`.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).resolve().parent.parent / "benchmarks").glob("*.py"))


def _xvit_imports(path: Path) -> list[tuple[str, str | None, int]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "xvit":
            found += [(node.module, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(a.name, None, node.lineno) for a in node.names if a.name.split(".")[0] == "xvit"]
    return found


def _missing(path: Path) -> list[str]:
    missing = []
    for module, name, line in _xvit_imports(path):
        try:
            mod = importlib.import_module(module)
        except ImportError as e:
            missing.append(f"{path.name}:{line}: import {module}: {e}")
            continue
        if name is not None and name != "*" and not hasattr(mod, name):
            try:
                importlib.import_module(f"{module}.{name}")
            except ImportError:
                missing.append(f"{path.name}:{line}: {module} has no {name}")
    return missing


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_benchmark_script_imports_resolve(path: Path) -> None:
    assert _missing(path) == []


def test_a_moved_name_is_caught(tmp_path: Path) -> None:
    script = tmp_path / "old.py"
    script.write_text(
        "def f():\n    from xvit.engine.evaluate.evaluator import load_run\n    import xvit.no_such_module\n"
    )
    missing = _missing(script)
    assert len(missing) == 2
    assert "xvit.engine.evaluate.evaluator has no load_run" in missing[0]
    assert "no_such_module" in missing[1]

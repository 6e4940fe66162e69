"""The lint contract of pyproject.toml: `.ci/run` runs `ruff check .` and `ruff format --check .`
on the tree; here a deliberate violation shows that the configuration catches what it must."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ruff = shutil.which("ruff")
pytestmark = pytest.mark.skipif(ruff is None, reason="ruff is a test extra: pip install -e '.[test]'")


def check(tmp_path: Path, text: str, *args: str) -> subprocess.CompletedProcess:
    path = tmp_path / "sample.py"
    path.write_text(text)
    return subprocess.run(
        [ruff, *args, "--config", str(ROOT / "pyproject.toml"), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "text, code",
    [
        ("import os\n", "F401"),  # unused import
        ("import sys\nimport os\n\nprint(os, sys)\n", "I001"),  # unsorted imports
        ("def f(x=[]):\n    return x\n", "B006"),  # mutable default
        ("fs = [lambda: i for i in range(3)]\n", "B023"),  # late-binding closure
    ],
)
def test_lint_catches_a_deliberate_violation(tmp_path, text, code):
    res = check(tmp_path, text, "check", "--no-cache")
    assert res.returncode == 1 and code in res.stdout


def test_format_check_catches_unformatted_code(tmp_path):
    assert check(tmp_path, "x = {  'a':1 }\n", "format", "--check", "--no-cache").returncode == 1
    assert check(tmp_path, 'x = {"a": 1}\n', "format", "--check", "--no-cache").returncode == 0

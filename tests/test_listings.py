"""`xvit --help`, `xvit models` and `xvit models --weights` answer without importing torch
(what made them take seconds), with the same figures as building every model."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from xvit.cli import models as models_cli
from xvit.models import list_models

PROBE = """
import contextlib, io, sys
from xvit.cli.main import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    try:
        code = main({argv!r})
    except SystemExit as e:
        code = e.code
print(code, "torch" in sys.modules, len(out.getvalue().splitlines()))
"""


@pytest.mark.parametrize(
    "argv", [["--help"], ["models"], ["models", "xvit_*", "--no-flops"], ["models", "--weights"]]
)
def test_listings_do_not_import_torch(argv):
    res = subprocess.run(
        [sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True, text=True, timeout=120
    )
    code, torch_loaded, lines = res.stdout.split()
    assert code in ("0", "None") and torch_loaded == "False" and int(lines) > 3, res.stderr


def test_the_shipped_table_is_what_the_models_give():
    table = json.loads(models_cli.TABLE.read_text())
    assert table["clip"] == models_cli.TABLE_CLIP
    rows = {r["name"]: r for r in table["models"]}
    assert sorted(rows) == list_models()  # every registered model, nothing else
    c = models_cli.TABLE_CLIP
    for name in list_models():
        want = models_cli.describe(name, c["frames"], c["img_size"], c["classes"])
        got = rows[name]
        assert (got["attention"], got["head"]) == (want["attention"], want["head"]), name
        assert got["params_m"] == pytest.approx(want["params_m"], rel=1e-12), name
        assert got["gflops"] == pytest.approx(want["gflops"], rel=1e-12), name


def test_other_clips_are_computed(capsys):
    from xvit.cli.main import main

    assert main(["models", "xvit_tiny_patch16", "--frames", "16", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["gflops"] == pytest.approx(models_cli.describe("xvit_tiny_patch16", 16, 224, 400)["gflops"])

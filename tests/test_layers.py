"""The package's layers point one way (cli -> engine -> {models, data}; benchmarks -> {models,
data}; inside the engine, job packages that import only those below them) and no module imports, at any depth (module top or inside a function), a module that
imports it back. The check reads the source (``ast``), so it also sees imports that only run
when a function is called, and modules imported by name (the lazy namespaces' ``_LAZY``
tables, ``importlib.import_module``)."""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Which sub-packages each sub-package may import (besides itself). ``xvit`` is the top-level
# package module (xvit/__init__.py, the public API), which only re-exports.
ALLOWED = {
    "cli": {"engine", "models", "data", "benchmarks"},
    "engine": {"models", "data"},
    "benchmarks": {"models", "data"},
    "models": set(),
    "data": set(),
}


# Inside the engine, one package per job, each importing only those below it (run < deploy <
# evaluate, infer < train, serve), never one beside it; nothing lives in engine/ but the
# packages and the re-exporting __init__.
ENGINE_JOBS = {
    "run": set(),
    "deploy": {"run"},
    "evaluate": {"run", "deploy"},
    "infer": {"run", "deploy"},
    "train": {"run", "deploy", "evaluate"},
    "serve": {"run", "deploy", "infer"},
}


# The levels of the job packages: a package may import only packages of lower levels, never
# one of its own (evaluate and infer, train and serve, know nothing of each other).
ENGINE_LEVELS = (("run",), ("deploy",), ("evaluate", "infer"), ("train", "serve"))


def test_engine_jobs_import_only_lower_levels():
    level = {job: i for i, jobs in enumerate(ENGINE_LEVELS) for job in jobs}
    assert sorted(level) == sorted(ENGINE_JOBS)
    sideways_or_up = {
        job: sorted(a for a in allowed if level[a] >= level[job]) for job, allowed in ENGINE_JOBS.items()
    }
    assert all(not v for v in sideways_or_up.values()), sideways_or_up


def engine_job(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "engine" else None


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


# Calls whose first argument names a module that they import (importlib's, and the CLI's
# option check that imports a module's list of choices when the option is used).
IMPORTING_CALLS = {"import_module", "lazy_choice"}


def named_imports(node: ast.AST) -> list[str]:
    """Modules imported by name in a string: the values of a ``_LAZY`` table (the PEP 562
    namespaces' ``name -> module``) and the first argument of an importing call."""
    if isinstance(node, ast.Assign | ast.AnnAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        names = {t.id for t in targets if isinstance(t, ast.Name)}
        names |= {
            t.value.id for t in targets if isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name)
        }
        if "_LAZY" in names:  # the table, or one entry of it
            values = node.value.values if isinstance(node.value, ast.Dict) else [node.value]
            return [v.value for v in values if isinstance(v, ast.Constant)]
    if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
        f = node.func
        called = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
        if called in IMPORTING_CALLS:
            return [node.args[0].value]
    return []


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """The ``xvit`` modules that ``path`` (module ``name``) imports, anywhere in the file
    (import statements, and modules named in strings: see :func:`named_imports`)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if named := named_imports(node):
            targets = [t for t in named if isinstance(t, str)]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from pkg import submodule`` depends on the submodule; any other name comes
            # from ``pkg`` itself (its __init__ when pkg is a package)
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known]
            targets = subs + ([base] if len(subs) < len(node.names) else [])
        else:
            continue
        for t in targets:
            if t in known and t != name:
                found.add(t)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    known = set(files)
    return {name: imports_of(path, name, known) for name, path in files.items()}


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def problems(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for mod, targets in sorted(graph.items()):
        src = layer(mod)
        for t in sorted(targets):
            dst = layer(t)
            if dst is None and src not in (None, "cli"):  # the CLI sits above the public API
                found.append(f"{mod} imports the top-level package {t} (import the defining module)")
            elif t == mod.rpartition(".")[0] and src is not None and mod.count(".") >= 2:
                found.append(f"{mod} imports its own package's __init__ ({t})")
            elif src and dst and src != dst and dst not in ALLOWED.get(src, set()):
                found.append(f"{mod} imports {t}: {src} may not depend on {dst}")
            elif (
                (job := engine_job(mod))
                and (other := engine_job(t))
                and job != other
                and other not in ENGINE_JOBS.get(job, set())
            ):
                found.append(f"{mod} imports {t}: engine.{job} may not depend on engine.{other}")
        if src == "engine" and mod != "xvit.engine" and engine_job(mod) not in ENGINE_JOBS:
            found.append(f"{mod} is not in one of the engine's job packages ({', '.join(ENGINE_JOBS)})")
    # cycles: strongly connected components of more than one module
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    found += [f"import cycle: {' <-> '.join(c)}" for c in sccs]
    return found


def test_layers_point_one_way_and_nothing_imports_back():
    graph = import_graph(SRC)
    assert "xvit.engine.train.loop" in graph and "xvit.models.video_vit" in graph
    assert problems(graph) == []


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = tmp_path / "src" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    return tmp_path / "src"


@pytest.mark.parametrize(
    "files, expected",
    [
        # a cycle hidden in a function-level import
        (
            {
                "xvit/__init__.py": "",
                "xvit/models/__init__.py": "",
                "xvit/models/a.py": "from xvit.models.b import f\n",
                "xvit/models/b.py": "def f():\n    from xvit.models import a\n",
            },
            "import cycle: xvit.models.a <-> xvit.models.b",
        ),
        # a lower layer reaching up
        (
            {
                "xvit/__init__.py": "",
                "xvit/models/__init__.py": "",
                "xvit/engine/__init__.py": "",
                "xvit/engine/train/loop.py": "",
                "xvit/models/m.py": "import xvit.engine.train.loop\n",
            },
            "xvit.models.m imports xvit.engine.train.loop: models may not depend on engine",
        ),
        # engine packages beside each other
        (
            {
                "xvit/__init__.py": "",
                "xvit/engine/__init__.py": "",
                "xvit/engine/serve/__init__.py": "",
                "xvit/engine/serve/app.py": "from xvit.engine.train.loop import train\n",
                "xvit/engine/train/__init__.py": "",
                "xvit/engine/train/loop.py": "",
            },
            "xvit.engine.serve.app imports xvit.engine.train.loop: engine.serve may not depend on engine.train",
        ),
        # a module loose in engine/
        (
            {"xvit/__init__.py": "", "xvit/engine/__init__.py": "", "xvit/engine/helpers.py": ""},
            "xvit.engine.helpers is not in one of the engine's job packages",
        ),
        # data and models are siblings, not layers of each other
        (
            {
                "xvit/__init__.py": "",
                "xvit/models/__init__.py": "",
                "xvit/data/__init__.py": "",
                "xvit/data/v.py": "",
                "xvit/models/m.py": "from ..data.v import x\n",
            },
            "xvit.models.m imports xvit.data.v: models may not depend on data",
        ),
        # an import named in a string: a lazy namespace's table, importlib
        (
            {
                "xvit/__init__.py": "",
                "xvit/models/__init__.py": "_LAZY = {'Trainer': 'xvit.engine.train.loop'}\n",
                "xvit/engine/__init__.py": "",
                "xvit/engine/train/__init__.py": "",
                "xvit/engine/train/loop.py": "",
            },
            "xvit.models imports xvit.engine.train.loop: models may not depend on engine",
        ),
        (
            {
                "xvit/__init__.py": "",
                "xvit/engine/__init__.py": "",
                "xvit/engine/infer/__init__.py": "",
                "xvit/engine/infer/timeline.py": (
                    "import importlib\n\ndef f():\n    return importlib.import_module('xvit.engine.serve.app')\n"
                ),
                "xvit/engine/serve/__init__.py": "",
                "xvit/engine/serve/app.py": "",
            },
            "xvit.engine.infer.timeline imports xvit.engine.serve.app: engine.infer may not depend on engine.serve",
        ),
        # a module importing its own package's re-exports
        (
            {
                "xvit/__init__.py": "",
                "xvit/models/__init__.py": "from xvit.models.m import g\n",
                "xvit/models/m.py": "def g():\n    from xvit.models import h\n",
            },
            "imports its own package's __init__",
        ),
    ],
)
def test_the_contract_catches_violations(tmp_path, files, expected):
    found = problems(import_graph(_tree(tmp_path, files)))
    assert any(expected in p for p in found), found


@pytest.mark.parametrize("job", sorted(ENGINE_JOBS))
def test_each_engine_package_says_what_it_owns_and_exports_real_names(job):
    import importlib

    package = importlib.import_module(f"xvit.engine.{job}")
    assert package.__doc__ and len(package.__doc__.split()) > 20
    assert package.__all__, job
    for name in package.__all__:
        value = getattr(package, name)
        assert getattr(value, "__module__", f"xvit.engine.{job}").startswith(f"xvit.engine.{job}"), name
    modules = {p.stem for p in (SRC / "xvit" / "engine" / job).glob("*.py")} - {"__init__"}
    assert all(m in package.__doc__ for m in modules), sorted(m for m in modules if m not in package.__doc__)


# Module paths of the flat engine/ that the docs named before the split (users may import them).
OLD_DOCUMENTED = {
    "xvit.engine.export": "xvit.engine.deploy.export",
    "xvit.engine.window_clips": "xvit.engine.infer.window_clips",
    "xvit.engine.ablation": "xvit.engine.train.ablation",
    "xvit.engine.data": "xvit.engine.run.data",
    "xvit.engine.config": "xvit.engine.run.config",
    "xvit.engine.serve_upload": "xvit.engine.serve.upload",
}


@pytest.mark.parametrize("old, new", sorted(OLD_DOCUMENTED.items()))
def test_old_engine_paths_import_as_the_moved_module(old, new):
    import importlib
    import sys

    import xvit.engine

    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} is now {new}"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new) and module.__name__ == new
    assert getattr(xvit.engine, old.rpartition(".")[2]) is module  # `from xvit.engine import export`


def test_every_old_engine_path_leads_to_a_module():
    import importlib.util

    import xvit.engine

    assert len(xvit.engine._MOVED) == 48  # the modules of the flat engine/ but train.py, evaluate.py
    for old, new in xvit.engine._MOVED.items():
        assert importlib.util.find_spec(new), (old, new)
        assert not (SRC / "xvit" / "engine" / f"{old}.py").exists()  # the real file wins
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("xvit.engine.no_such_module")
    from xvit.engine.evaluate import evaluate, evaluate_scores  # the old modules' public names
    from xvit.engine.train import Trainer, TrainResult, train

    assert all(callable(f) for f in (evaluate, evaluate_scores, Trainer, TrainResult, train))


def design_layout() -> set[str]:
    """The files that docs/design.md's Layout block names, as paths from the repository root
    (a line's leading ``a.py, b.py`` belong to the folder above it by indentation)."""
    text = (SRC.parent / "docs" / "design.md").read_text()
    block = text.split("## Layout", 1)[1].split("```")[1]
    listed, folders = set(), []
    for line in block.splitlines():
        m = re.match(r"^( *)(\S+)", line)
        if not m:
            continue
        indent, first = len(m.group(1)), m.group(2)
        if first.endswith("/"):
            folders = [(i, d) for i, d in folders if i < indent] + [(indent, first)]
            continue
        files = re.match(r"^ *((?:[\w.]+\.(?:py|json)(?:,\s*|\s|$))+)", line)
        if files:
            parent = "".join(d for i, d in folders if i < indent)
            listed |= {parent + f for f in re.findall(r"[\w.]+\.(?:py|json)", files.group(1))}
    return listed


def test_the_design_map_names_every_module_where_it_is():
    """A reader finds a module from docs/design.md: every file it names is there, and every
    module of the library (the CLI's one-per-command modules aside) is named, in its folder."""
    root = SRC.parent
    listed = design_layout()
    assert "src/xvit/engine/train/loop.py" in listed and "src/xvit/data/cores.py" in listed
    assert sorted(p for p in listed if not (root / p).is_file()) == []
    modules = {
        p.relative_to(root).as_posix()
        for p in (SRC / "xvit").rglob("*.py")
        if p.name != "__init__.py" and p.parent.name != "cli"
    }
    assert sorted(modules - listed) == []

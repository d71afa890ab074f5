"""The package's shape: no import cycles inside python/hipgrad (imports anywhere in a module,
function bodies included), no module over 450 lines, the engine / ONNX / CLI loaded only on
first use, and the public paths of the README still importable."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import hipgrad

# The package under test: the dev tree's python/hipgrad, or the installed copy CI tests (each
# holds its compiled _C; the source tree of a fresh clone has none).
PKG = Path(hipgrad.__file__).resolve().parent
MAX_LINES = 450


def _modules(root: Path = PKG) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file and compiled extension of the package."""
    out = {}
    for f in sorted(root.rglob("*")):
        if f.suffix not in (".py", ".so", ".pyd"):
            continue
        if f.suffix != ".py":  # _C.cpython-311-x86_64-linux-gnu.so is hipgrad._C
            f = f.with_name(f.name.split(".")[0] + ".py")
        parts = list(f.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = f
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules `name` imports, anywhere in its source."""
    if not path.exists():  # a compiled extension imports nothing of the package
        return set()
    is_pkg = path.name == "__init__.py"
    here = name if is_pkg else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = here.split(".")
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([base] if base else []))
            for a in node.names:
                sub = f"{base}.{a.name}"
                if sub in modules:
                    found.add(sub)
                elif base in modules:
                    found.add(base)
    found.discard(name)
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return path[path.index(n):] + [n]
            if n not in state and (c := visit(n)):
                return c
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (c := visit(m)):
            return c
    return None


def test_cycle_finder_sees_a_cycle_and_a_dag():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_import_resolution_follows_relative_imports(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from . import sub\n")
    (pkg / "util.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "a.py").write_text("def f():\n    from ..util import x\n    from . import b\n")
    (pkg / "sub" / "b.py").write_text("import pkg\n")
    mods = _modules(pkg)
    assert _imports("pkg.sub.a", mods["pkg.sub.a"], mods) == {"pkg.util", "pkg.sub.b"}
    assert _imports("pkg.sub.b", mods["pkg.sub.b"], mods) == {"pkg"}
    assert _imports("pkg", mods["pkg"], mods) == {"pkg.sub"}


def test_no_import_cycles():
    modules = _modules()
    graph = {m: _imports(m, p, modules) for m, p in modules.items()}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_module_over_450_lines():
    long = {str(p.relative_to(PKG)): n for p in PKG.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_import_hipgrad_leaves_engine_onnx_and_cli_unloaded():
    code = ("import sys, hipgrad as hg\n"
            "heavy = ('hipgrad.engine.engine', 'hipgrad.engine.lowering', 'hipgrad.engine.onnx',\n"
            "         'hipgrad.cli', 'hipgrad.profiling.compare', 'onnx')\n"
            "print(sorted(m for m in sys.modules if m in heavy))\n"
            "hg.InferenceEngine, hg.compare\n"
            "print(sorted(m for m in sys.modules if m in heavy))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PKG.parents[1], env=_env())
    before, after = out.stdout.splitlines()
    assert before == "[]", f"import hipgrad loaded {before}"
    assert "'hipgrad.engine.engine'" in after and "'hipgrad.profiling.compare'" in after


def _env() -> dict:
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PKG.parent)] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def test_readme_paths_import():
    import hipgrad as hg
    from hipgrad import nn, optim
    from hipgrad.data import DataLoader, load_digits
    from hipgrad.engine.engine import InferenceEngine
    from hipgrad.profiling.compare import compare

    assert hg.InferenceEngine is InferenceEngine and hg.compare is compare
    assert callable(load_digits) and isinstance(DataLoader, type)
    assert hg.nn is nn and hg.optim is optim
    for name in ("Trainer", "build_model", "trace", "phase", "tuning_report", "load_checkpoint"):
        assert callable(getattr(hg, name)), name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        hg.nope  # noqa: B018


def test_every_cli_command_is_a_module_with_add_arguments():
    import argparse
    import importlib

    from hipgrad.cli import COMMANDS, build_parser

    for name, (module, help_text) in COMMANDS.items():
        mod = importlib.import_module(f"hipgrad.cli.{module}")
        run = mod.add_arguments(argparse.ArgumentParser())
        assert callable(run) and help_text, name
    parser = build_parser()
    required = {"infer": ["m"], "generate": ["r", "--prompt", "x"],
                "finetune": ["r", "--data", "d", "--out", "o"]}
    for name in COMMANDS:
        assert parser.parse_args([name] + required.get(name, [])).command == name

"""The layer rules of DESIGN.md section 1, read from the source with ``ast`` (nothing is imported).

L0 errors/result/config → L1 backend → L2 kernels/krylov → L3 sources/ntk → L4 graph/store →
L5 budget/runtime/planner → L6 estimators → L7 api/cli/__init__/__main__/dashboard: each module imports only from
its own layer or the layers above it, and third-party imports follow the table (no dask below L4 except
``dask.config`` in config.py, no distributed below L5, jax only lazily).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import dlogdet

PKG = Path(dlogdet.__file__).resolve().parent

# top-level name inside dlogdet (module or sub-package) -> layer
LAYERS = {
    "core": 0,
    "linalg": 1,
    "sources": 2, "ntk": 2,
    "engine": 3,
    "runtime": 4,
    "estimators": 5,
    "api": 6, "cli": 6, "__init__": 6, "__main__": 6, "ui": 6,
}


def modules() -> dict[str, Path]:
    """Dotted name -> path of every module of the package."""
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        rel = p.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


MODULES = modules()


def layer_of(modname: str) -> int:
    parts = modname.split(".")
    assert parts[0] == "dlogdet"
    top = parts[1] if len(parts) > 1 else "__init__"
    if top not in LAYERS:
        raise AssertionError(f"module dlogdet.{top} has no layer: add it to LAYERS in tests/test_layers.py "
                             "(and to DESIGN.md section 1)")
    return LAYERS[top]


def is_package(modname: str) -> bool:
    return MODULES[modname].name == "__init__.py"


def resolve(modname: str, node: ast.ImportFrom) -> str:
    """Absolute module named by a ``from ... import`` (relative levels resolved against ``modname``)."""
    if node.level == 0:
        return node.module or ""
    base = modname.split(".")
    if not is_package(modname):
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


class Imports(ast.NodeVisitor):
    """Every import of a module: (absolute target, line, at_module_level)."""

    def __init__(self, modname: str):
        self.modname = modname
        self.found: list[tuple[str, int, bool]] = []
        self.depth = 0  # inside a function body: the import runs lazily, not when the module is imported

    def _func(self, node):
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _func

    def visit_Import(self, node):
        for a in node.names:
            self.found.append((a.name, node.lineno, self.depth == 0))

    def visit_ImportFrom(self, node):
        mod = resolve(self.modname, node)
        for a in node.names:
            sub = f"{mod}.{a.name}"
            # `from . import backend` imports a module; `from .errors import X` imports a name from a module
            target = sub if sub in MODULES or (mod.split(".")[0] != "dlogdet" and a.name != "*") else mod
            self.found.append((target, node.lineno, self.depth == 0))


def imports_of(modname: str):
    tree = ast.parse(MODULES[modname].read_text(), filename=str(MODULES[modname]))
    v = Imports(modname)
    v.visit(tree)
    return v.found


def third_party(modname: str, top: str) -> list[tuple[str, int, bool]]:
    return [(t, ln, lvl) for t, ln, lvl in imports_of(modname) if t == top or t.startswith(top + ".")]


def test_modules_found():
    # the parser sees the package (guards against a test that checks nothing)
    for m in ("dlogdet", "dlogdet.linalg.kernels", "dlogdet.engine.graph", "dlogdet.estimators.exact", "dlogdet.sources.base"):
        assert m in MODULES
    assert any(t.startswith("dask") for t, *_ in imports_of("dlogdet.engine.graph"))
    assert any(t == "dlogdet.linalg.kernels" for t, *_ in imports_of("dlogdet.engine.graph"))
    assert any(t == "dlogdet.core.errors" for t, *_ in imports_of("dlogdet.estimators.exact"))


def upward_violations(modname: str, found) -> list[str]:
    own = layer_of(modname)
    return [f"{modname} (L{own}) line {line} imports {target} (L{layer_of(target)}): layers import only from "
            "the layers above them"
            for target, line, _ in found
            if (target == "dlogdet" or target.startswith("dlogdet.")) and layer_of(target) > own]


@pytest.mark.parametrize("modname", sorted(MODULES))
def test_internal_imports_point_up(modname):
    bad = upward_violations(modname, imports_of(modname))
    assert not bad, bad


@pytest.mark.parametrize("modname", sorted(m for m in MODULES if m.startswith("dlogdet.estimators.")))
def test_estimators_do_not_import_each_other(modname):
    for target, line, _ in imports_of(modname):
        if target.startswith("dlogdet.estimators.") and target.split(".")[2] != modname.split(".")[2]:
            raise AssertionError(f"{modname} line {line} imports {target}: estimators meet only in the registry")


BASE = ["dlogdet.core.errors", "dlogdet.core.result", "dlogdet.core.config"]
LOW = ["dlogdet.linalg.backend", "dlogdet.linalg.kernels"] + [m for m in MODULES if m == "dlogdet.linalg.krylov"]


@pytest.mark.parametrize("modname", BASE)
def test_base_layer_imports_no_dask_distributed_jax(modname):
    for top in ("distributed", "jax", "dask_jobqueue", "dask_cuda"):
        assert not third_party(modname, top), f"{modname} imports {top}"
    def allowed(t):
        return modname == "dlogdet.core.config" and (t == "dask.config" or t.startswith("dask.config."))

    bad = [(t, ln) for t, ln, _ in third_party(modname, "dask") if not allowed(t)]
    assert not bad, f"{modname} imports {bad} (config may import dask.config only)"


def test_config_uses_dask_config_only():
    targets = {t for t, *_ in third_party("dlogdet.core.config", "dask")}
    assert targets and all(t == "dask.config" or t.startswith("dask.config.") for t in targets), targets


@pytest.mark.parametrize("modname", LOW)
def test_backend_and_kernels_import_no_dask(modname):
    for top in ("dask", "distributed", "jax"):
        assert not third_party(modname, top), f"{modname} imports {top}: L1/L2 kernels stay free of schedulers"


@pytest.mark.parametrize("modname", sorted(m for m in MODULES if m.startswith("dlogdet.sources")))
def test_sources_import_no_distributed(modname):
    assert not third_party(modname, "distributed"), f"{modname} imports distributed"


@pytest.mark.parametrize("modname", sorted(MODULES))
def test_no_module_level_jax(modname):
    bad = [(t, ln) for t, ln, top_level in third_party(modname, "jax") if top_level]
    assert not bad, f"{modname} imports jax when it is imported (line {bad[0][1]}): import it inside functions"


class Prints(ast.NodeVisitor):
    def __init__(self):
        self.lines: list[int] = []

    def visit_Call(self, node):
        if isinstance(node.func, ast.Name) and node.func.id == "print":
            self.lines.append(node.lineno)
        self.generic_visit(node)


def is_cli(modname: str) -> bool:
    """The command line's modules: the only ones that print (the CLI owns output)."""
    return modname == "dlogdet.__main__" or modname == "dlogdet.cli" or modname.startswith("dlogdet.cli.")


@pytest.mark.parametrize("modname", sorted(m for m in MODULES if not is_cli(m)))
def test_no_print_in_library(modname):
    v = Prints()
    v.visit(ast.parse(MODULES[modname].read_text()))
    assert not v.lines, f"{modname} calls print() at lines {v.lines}: use logging; only the CLI prints"


def test_layer_checker_catches_violations(tmp_path):
    # the checker itself: a relative import of a lower layer from a higher one is seen with its target
    src = "from ..engine.graph import x\nfrom ..linalg import backend\ndef f():\n    import jax\n"
    tree = ast.parse(src)
    v = Imports("dlogdet.estimators.exact")
    v.visit(tree)
    assert ("dlogdet.engine.graph", 1, True) in v.found
    assert ("dlogdet.linalg.backend", 2, True) in v.found
    assert ("jax", 4, False) in v.found
    assert not upward_violations("dlogdet.estimators.exact", v.found)
    # and a kernel that reaches down into the graph layer is caught, lazily imported or not
    v = Imports("dlogdet.linalg.kernels")
    v.visit(ast.parse("def f():\n    from ..engine.graph import Tiling\n"))
    assert upward_violations("dlogdet.linalg.kernels", v.found)


FACES = ("cli", "ui", "__main__")


def is_face(modname: str) -> bool:
    parts = modname.split(".")
    return len(parts) > 1 and parts[1] in FACES


@pytest.mark.parametrize("modname", sorted(MODULES))
def test_the_library_never_imports_the_faces(modname):
    # the faces (command line, progress display, dashboard page) import the library and ui; never the other way,
    # and ui, which draws, never imports the command line
    targets = [(t, ln) for t, ln, _ in imports_of(modname)]
    if not is_face(modname):
        bad = [(t, ln) for t, ln in targets if t.split(".")[:2] in (["dlogdet", "cli"], ["dlogdet", "ui"])]
        assert not bad, f"{modname} imports the faces: {bad}"
    if modname.startswith("dlogdet.ui"):
        assert not [t for t, _ in targets if t.startswith("dlogdet.cli")], f"{modname} imports the command line"
    if modname in ("dlogdet.ui.notebook", "dlogdet.ui.dashboard"):
        assert not [t for t, _ in targets if t.startswith("dlogdet.cli")], f"{modname} imports the command line"

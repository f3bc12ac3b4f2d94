"""What the layer contracts cannot say, read from the source with ``ast`` (nothing is imported).

The layers of DESIGN.md section 1 are folders, and their dependency rules are import-linter contracts in
pyproject.toml (``make lint``; which layer imports which, no dask below the engine, JAX only in ntk, the faces
never imported by the library, estimators independent). Here: every folder of the package has a layer in those
contracts, the settings use dask.config only, JAX is imported lazily, and only the command line prints.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

import dlogdet

PKG = Path(dlogdet.__file__).resolve().parent

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
    for m in ("dlogdet", "dlogdet.linalg.kernels", "dlogdet.engine.graph", "dlogdet.estimators.exact",
              "dlogdet.sources.base"):
        assert m in MODULES
    assert any(t.startswith("dask") for t, *_ in imports_of("dlogdet.engine.graph"))
    assert any(t == "dlogdet.linalg.kernels" for t, *_ in imports_of("dlogdet.engine.graph"))
    assert any(t == "dlogdet.core.errors" for t, *_ in imports_of("dlogdet.estimators.exact"))


def test_config_uses_dask_config_only():
    targets = {t for t, *_ in third_party("dlogdet.core.config", "dask")}
    assert targets and all(t == "dask.config" or t.startswith("dask.config.") for t in targets), targets


#: The NTK's tracing machinery: modules that are JAX through and through (a program's equations, their rules),
#: imported only from inside the functions of ``dlogdet.ntk.source`` that trace a model, never at import time
#: (tests/test_ntk.py checks in a fresh process that ``import dlogdet, dlogdet.ntk`` loads no JAX).
JAX_INSIDE = {"dlogdet.ntk.jaxpr", "dlogdet.ntk.rules", "dlogdet.ntk.structured", "dlogdet.ntk.explain"}


@pytest.mark.parametrize("modname", sorted(set(MODULES) - JAX_INSIDE))
def test_no_module_level_jax(modname):
    bad = [(t, ln) for t, ln, top_level in third_party(modname, "jax") if top_level]
    assert not bad, f"{modname} imports jax when it is imported (line {bad[0][1]}): import it inside functions"


@pytest.mark.parametrize("modname", sorted(MODULES))
def test_jax_modules_are_imported_lazily(modname):
    # a module that imports JAX at its top may itself be imported only inside functions
    bad = [(t, ln) for t, ln, top_level in imports_of(modname) if t in JAX_INSIDE and top_level
           and modname not in JAX_INSIDE]
    assert not bad, f"{modname} imports {bad[0][0]} at line {bad[0][1]} when it is imported: that loads JAX"


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


def test_import_visitor_sees_lazy_and_relative_imports():
    # the checker itself: relative imports are resolved, and an import inside a function is seen as lazy
    src = "from ..engine.graph import x\nfrom ..linalg import backend\ndef f():\n    import jax\n"
    v = Imports("dlogdet.estimators.exact")
    v.visit(ast.parse(src))
    assert ("dlogdet.engine.graph", 1, True) in v.found
    assert ("dlogdet.linalg.backend", 2, True) in v.found
    assert ("jax", 4, False) in v.found


def _contracts() -> list[dict]:
    with open(PKG.parent / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["tool"]["importlinter"]["contracts"]


def test_every_package_folder_has_a_layer():
    # import-linter checks only the modules its layers name: a new top-level folder must be given one
    layers = next(c for c in _contracts() if c["type"] == "layers")["layers"]
    named = {m.strip() for layer in layers for m in layer.replace("|", ":").split(":")}
    folders = {f"dlogdet.{p.name}" for p in PKG.iterdir() if (p / "__init__.py").exists()}
    assert folders and folders <= named, f"packages without a layer in pyproject.toml: {sorted(folders - named)}"
    assert named <= folders | {"dlogdet.api"}, f"layers naming no package: {sorted(named - folders)}"
    top = {p.stem for p in PKG.glob("*.py")}
    assert top == {"__init__", "__main__", "api"}, f"modules outside the layer folders: {sorted(top)}"


def test_estimator_independence_covers_every_method():
    # the contract names the methods by a wildcard: every registered method is a direct child of the package
    from dlogdet.estimators import REGISTRY

    independent = next(c for c in _contracts() if c["type"] == "independence")["modules"]
    assert independent == ["dlogdet.estimators.*"]
    for target in REGISTRY.values():
        module = target.split(":")[0]
        assert module.rsplit(".", 1)[0] == "dlogdet.estimators" and module in MODULES, module

"""The module paths of dlogdet before its folders showed its layers, kept as deprecated aliases.

``import dlogdet.report`` (or ``from dlogdet import report``) still gives the module, now
:mod:`dlogdet.ui.report`, with a :class:`~dlogdet.core.errors.DlogdetDeprecationWarning` naming the new path. Only
modules that moved whole are listed: a module that was split has no single new home to alias.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType

from .errors import warn_renamed

#: old module path -> new module path
MOVED: dict[str, str] = {
    "dlogdet.errors": "dlogdet.core.errors",
    "dlogdet.status": "dlogdet.core.status",
    "dlogdet.diagnostics": "dlogdet.core.diagnostics",
    "dlogdet.result": "dlogdet.core.result",
    "dlogdet.config": "dlogdet.core.config",
    "dlogdet.backend": "dlogdet.linalg.backend",
    "dlogdet.kernels": "dlogdet.linalg.kernels",
    "dlogdet.krylov": "dlogdet.linalg.krylov",
    "dlogdet.freecurve": "dlogdet.linalg.freecurve",
    "dlogdet.scalinglaw": "dlogdet.linalg.scalinglaw",
    "dlogdet.store": "dlogdet.engine.store",
    "dlogdet.matvec": "dlogdet.engine.products",
    "dlogdet.spectra": "dlogdet.estimators.freedecomp.spectra",
    "dlogdet.budget": "dlogdet.runtime.budget",
    "dlogdet.memory": "dlogdet.runtime.memory",
    "dlogdet.deploy": "dlogdet.runtime.deploy",
    "dlogdet.timeline": "dlogdet.runtime.timeline",
    "dlogdet.planner": "dlogdet.runtime.planner",
    "dlogdet.report": "dlogdet.ui.report",
    "dlogdet.dashboard": "dlogdet.ui.dashboard",
    "dlogdet.progress": "dlogdet.ui.notebook",
}


class _Aliases(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old path in :data:`MOVED` and loads it as the module at its new path (the same module object)."""

    def find_spec(self, fullname: str, path=None, target=None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = MOVED[spec.name]
        warn_renamed(spec.name, new, "module")  # stack level 3: the import that named it
        return importlib.import_module(new)

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module at the new path is already imported."""


def install() -> None:
    """Put the alias finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _Aliases) for f in sys.meta_path):
        sys.meta_path.append(_Aliases())

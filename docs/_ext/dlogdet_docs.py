"""The parts of the dlogdet documentation that are generated at build time, so that they cannot drift.

Generated when the build starts (``config-inited``), into ``docs/_generated/``, ``docs/api/`` and
``docs/examples/`` (all ignored by git), each written only when its text changes (incremental builds stay
incremental):

* the API reference: one autosummary table per kind (functions, results, sources, errors, ...) of every name in
  ``dlogdet.__all__`` and ``dlogdet.ntk.__all__``; autosummary then writes one page per name from
  ``_templates/autosummary/``. A data name without a ``#:`` comment where it is defined gets the summary of
  :data:`DATA_SUMMARIES` (the source's comment wins once there is one).
* the configuration reference: every key under ``dlogdet:`` of the package's ``dlogdet.yaml``, its default and the
  comment above it (its reason); a key without a comment, or a key of the loaded defaults that the parser did not
  see, fails the build.
* the troubleshooting reference: every subclass of ``dlogdet.DlogdetError`` (walked through ``__subclasses__``, so
  a module move changes nothing), its place in the tree, its exit code on the command line, its docstring; and the
  members of ``dlogdet.Status`` with their cause and remedy.
* the decision guide's figure, drawn from ``_data/cost-accuracy.csv`` (the measured numbers and their sources).
* the example notebooks, copied from ``notebooks/`` (myst-nb executes them).

The command-line reference uses :func:`cli_parser`: the parser of the module behind the ``dlogdet`` console script
(read from the installed entry point, not from a module path).

References to names of dlogdet that exist but have no page of their own (an internal module named in a docstring)
are resolved by :func:`resolve_internal`: to the public page of the same object when there is one, else as plain
code. A reference to a name that does not exist stays unresolved, and the nitpicky build fails on it.
"""

from __future__ import annotations

import csv
import filecmp
import importlib
import importlib.metadata
import inspect
import io
import re
import shutil
from pathlib import Path
from typing import Any, Iterator

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.util import logging

logger = logging.getLogger(__name__)

DOCS = Path(__file__).resolve().parents[1]
ROOT = DOCS.parent
GENERATED = DOCS / "_generated"

#: the public namespaces whose ``__all__`` the API reference documents, with the title of their page
NAMESPACES = {"dlogdet": "dlogdet", "dlogdet.ntk": "dlogdet.ntk: neural tangent kernels"}

#: summary lines of public data that have no ``#:`` comment where they are defined (the comment wins)
DATA_SUMMARIES = {
    "__version__": "The version of the installed dlogdet package.",
    "ACTIVATIONS": "Names of the activation functions the model zoo takes (``activation=``).",
    "IMPLEMENTATIONS": "Names of the NTK tile algorithms :class:`NTKSource` takes (``implementation=``).",
    "OUTPUTS": "Kinds of NTK :class:`NTKSource` builds (``outputs=``): one row per output, or their sum.",
    "DATASETS": "Names of the data sets :func:`load_dataset` generates or loads without a download.",
}


def write_if_changed(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` unless it already holds it (an unchanged file keeps its time stamp)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def rst_text(s: str) -> str:
    """Plain text (with ``code`` in backticks, as in YAML comments) as reStructuredText: backtick spans become
    literals, markup characters outside them are escaped."""
    out = []
    for i, part in enumerate(re.split(r"`([^`]*)`", s)):
        if i % 2:
            out.append(f"``{part}``" if part else "")
        else:
            part = part.replace("\\", "\\\\")
            part = re.sub(r"([*|`])", r"\\\1", part)
            part = re.sub(r"_(?=\W|$)", r"\\_", part)
            out.append(part)
    return "".join(out)


def title(text: str, char: str) -> str:
    return f"{text}\n{char * len(text)}\n"


# ---------------------------------------------------------------------------------------------- API reference

def _kind(obj: Any) -> str:
    if inspect.isclass(obj) and issubclass(obj, BaseException):
        return "errors"
    if inspect.isclass(obj):
        return "classes"
    if callable(obj):
        return "functions"
    return "data"


KIND_TITLES = {"functions": "Functions", "classes": "Classes", "errors": "Errors", "data": "Constants"}


def public_names(namespace: str) -> list[str]:
    module = importlib.import_module(namespace)
    return list(module.__all__)


def api_pages() -> dict[Path, str]:
    """The text of ``api/<namespace>.rst`` for each public namespace: autosummary tables of its ``__all__``."""
    pages = {}
    for namespace, heading in NAMESPACES.items():
        module = importlib.import_module(namespace)
        groups: dict[str, list[str]] = {k: [] for k in KIND_TITLES}
        for name in public_names(namespace):
            groups[_kind(getattr(module, name))].append(name)
        summary = (inspect.getdoc(module) or "").strip().split("\n\n")[0]
        lines = [".. This file is generated by docs/_ext/dlogdet_docs.py from __all__; edits are overwritten.", "",
                 title(heading, "="), f".. py:module:: {namespace}", "   :no-index:", "",
                 f".. currentmodule:: {namespace}", "", summary, "",
                 f"Every name below is in ``{namespace}.__all__`` (the names a user imports; module paths inside the "
                 "package are not part of the API).", ""]
        for kind, names in groups.items():
            if not names:
                continue
            lines += [title(KIND_TITLES[kind], "-"), ".. autosummary::", "   :toctree: generated", ""]
            lines += [f"   {name}" for name in names]
            lines.append("")
        pages[DOCS / "api" / f"{namespace}.rst"] = "\n".join(lines)
    return pages


def data_comment(value: Any, name: str) -> list[str]:
    """The ``#:`` comment above ``name = ...`` in the dlogdet module that defines ``value`` under that name."""
    from sphinx.pycode import ModuleAnalyzer

    import dlogdet
    base = Path(dlogdet.__file__).parent
    for path in sorted(base.rglob("*.py")):
        modname = ".".join(("dlogdet",) + path.relative_to(base).with_suffix("").parts).removesuffix(".__init__")
        try:
            mod = importlib.import_module(modname)
        except Exception:   # an optional dependency missing: that module defines nothing we need here
            continue
        if getattr(mod, name, object()) is not value:
            continue
        docs = ModuleAnalyzer.for_module(modname).find_attr_docs()
        if ("", name) in docs:
            return list(docs[("", name)])
    return []


def fill_data_docs(app, what, name, obj, options, lines) -> None:
    """autodoc-process-docstring: public data get the ``#:`` comment of their defining module, or a summary."""
    if what not in ("data", "attribute") or not name.startswith("dlogdet"):
        return
    short = name.rsplit(".", 1)[-1]
    namespace = name.rsplit(".", 1)[0]
    if namespace not in NAMESPACES or short not in public_names(namespace):
        return
    if type(obj).__module__ == "builtins":     # autodoc found the docstring of tuple, int or str: not ours
        lines[:] = data_comment(obj, short) or [DATA_SUMMARIES.get(short, "")]
        if not "".join(lines).strip():
            raise ExtensionError(f"public data {name} has no #: comment and no entry in DATA_SUMMARIES")


# ---------------------------------------------------------------------------------------------- configuration

def yaml_path() -> Path:
    """The package's ``dlogdet.yaml``, wherever in the package it lives."""
    import dlogdet
    found = sorted(Path(dlogdet.__file__).parent.rglob("dlogdet.yaml"))
    if len(found) != 1:
        raise ExtensionError(f"expected one dlogdet.yaml in the package, found {found}")
    return found[0]


def config_entries(text: str) -> tuple[list[str], list[dict]]:
    """(header comment, entries) of a dlogdet.yaml: every key with its dotted path, raw value, and the comment lines
    above it; groups (keys with nested keys) are entries too, with ``leaf`` False."""
    header, comment, entries, stack = [], [], [], []
    seen_key = False
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line.strip():
            comment = []
            continue
        m = re.match(r"^(\s*)#\s?(.*)$", line)
        if m:
            (comment if seen_key else header).append(m.group(2))
            continue
        m = re.match(r"^(\s*)([A-Za-z0-9_.-]+):\s*(.*?)\s*$", line)
        if not m:
            raise ExtensionError(f"dlogdet.yaml: cannot read the line {line!r}")
        seen_key = True
        depth = len(m.group(1)) // 2
        del stack[depth:]
        stack.append(m.group(2))
        value = m.group(3)
        entries.append({"path": ".".join(stack), "value": value, "comment": comment, "leaf": value != ""})
        comment = []
    return header, entries


def config_page() -> str:
    import yaml

    path = yaml_path()
    text = path.read_text(encoding="utf-8")
    header, entries = config_entries(text)
    loaded = yaml.safe_load(text)

    def leaves(d, prefix):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from leaves(v, f"{prefix}.{k}")
            else:
                yield f"{prefix}.{k}"

    documented = {e["path"] for e in entries if e["leaf"]}
    missing = sorted(set(leaves(loaded["dlogdet"], "dlogdet")) - documented)
    if missing:
        raise ExtensionError(f"dlogdet.yaml keys the configuration page did not read: {missing}")
    lines = [".. This file is generated by docs/_ext/dlogdet_docs.py from dlogdet.yaml; edits are overwritten.", ""]
    # sections: the top-level keys first, then each group in the file's order (keys sorted under their parent)
    groups = {"dlogdet": []}
    comments = {"dlogdet": []}
    for e in entries:
        if e["path"] == "dlogdet":
            continue
        parent = e["path"].rsplit(".", 1)[0]
        if not e["leaf"]:
            groups.setdefault(e["path"], [])
            comments[e["path"]] = e["comment"]
            continue
        groups.setdefault(parent, []).append(e)
    for group, keys in groups.items():
        if not keys:
            continue
        heading = "General settings: dlogdet.*" if group == "dlogdet" else f"{group}.*"
        lines += [title(heading, "-")]
        if comments.get(group):
            lines += [rst_text(" ".join(comments[group])), ""]
        for e in keys:
            if not " ".join(e["comment"]).strip():
                logger.warning(f"dlogdet.yaml: the key {e['path']} has no comment (its reason) above it",
                               location=str(path))
            env = "DASK_" + "__".join(p.upper().replace("-", "_") for p in e["path"].split("."))
            anchor = e["path"].replace(".", "-")
            lines += [f".. _config-{anchor}:", "", f"``{e['path']}``",
                      f"   default ``{e['value']}`` · environment ``{env}``", "",
                      "   " + rst_text(" ".join(e["comment"])), ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- errors and status

def error_classes() -> list[tuple[type, int]]:
    """Every subclass of ``dlogdet.DlogdetError`` with its depth below it, depth first, private classes skipped
    (their subclasses are kept)."""
    import dlogdet

    out: list[tuple[type, int]] = []

    def walk(cls, depth):
        if not cls.__name__.startswith("_"):
            out.append((cls, depth))
            depth += 1
        for sub in sorted(cls.__subclasses__(), key=lambda c: c.__name__):
            walk(sub, depth)

    walk(dlogdet.DlogdetError, 0)
    seen, unique = set(), []
    for cls, depth in out:          # a class with two dlogdet bases shows up under each; keep the first
        if cls not in seen:
            seen.add(cls)
            unique.append((cls, depth))
    return unique


def public_name(obj: Any) -> str | None:
    """``namespace.name`` under which ``obj`` is public, if it is."""
    for namespace in NAMESPACES:
        module = importlib.import_module(namespace)
        for name in module.__all__:
            if getattr(module, name, None) is obj:
                return f"{namespace}.{name}"
    return None


def _ref(cls: type) -> str:
    name = public_name(cls)
    return f":class:`~{name}`" if name else f"``{cls.__name__}``"


def errors_page() -> str:
    """reStructuredText: one section per error class, its docstring (the cause, and the fix where it names one), its
    place in the tree, how to catch it and what the command line does with it."""
    import dlogdet
    from numpydoc.docscrape_sphinx import get_doc_object

    lines = [".. This file is generated by docs/_ext/dlogdet_docs.py from the subclasses of DlogdetError.", ""]
    for cls, _ in error_classes():
        chain = [c for c in cls.__mro__[1:] if issubclass(c, dlogdet.DlogdetError) and not c.__name__.startswith("_")]
        builtin = [c.__name__ for c in cls.__mro__[1:]
                   if c.__module__ == "builtins" and c not in (Exception, BaseException, object)]
        bad_input = issubclass(cls, dlogdet.InputError)
        name = public_name(cls)
        lines += [f".. _error-{cls.__name__}:", "", title(cls.__name__, "~")]
        doc = get_doc_object(cls, what="class", config={"show_class_members": False})
        lines += str(doc).strip("\n").splitlines() + [""]
        facts = []
        if chain:
            facts.append("**Is a:** " + " → ".join(_ref(c) for c in chain)
                         + (f"; also a Python ``{'``, ``'.join(builtin)}``" if builtin else ""))
        below = [c for c, _ in error_classes() if c is not cls and issubclass(c, cls)]
        facts.append("**Catch it as:** " + (f"``{name}``" if name else
                                             f"{_ref(chain[0])} (this class is not exported)")
                     + (f", which also catches the {len(below)} class{'es' if len(below) > 1 else ''} below it" if below else ""))
        facts.append("**Command line:** " + ("exit code 2, bad input: one line on stderr, no traceback" if bad_input
                                             else "exit code 1, a failure: one line on stderr; ``--debug`` shows "
                                                  "the traceback"))
        if not below and not re.search(r"\b(fix|add|use|give|start|raise|resume|change)\b",
                                       inspect.getdoc(cls) or "", re.I):
            facts.append("**Fix:** its message names the value at fault and what to change")
        lines += [f"- {f}" for f in facts] + [""]
    return "\n".join(lines)


def md_cell(s: str) -> str:
    """Text for a cell of a Markdown table: backtick spans kept, pipes and markup characters outside them escaped."""
    out = []
    for k, part in enumerate(re.split(r"(`[^`]*`)", s)):
        out.append(part.replace("|", "\\|") if k % 2 else re.sub(r"([\\*_<>\[\]|#$])", r"\\\1", part))
    return "".join(out)


def status_rows() -> list[tuple[str, str, str]]:
    import dlogdet

    return [(m.value, m.cause or "none: the number is exact, or within its stated uncertainty", m.remedy or "—")
            for m in dlogdet.Status]


def status_page() -> str:
    """The members of ``dlogdet.Status`` with their cause and remedy, as a reStructuredText table."""
    lines = [".. This file is generated by docs/_ext/dlogdet_docs.py from the members of dlogdet.Status.", "",
             ".. list-table::", "   :header-rows: 1", "   :widths: 14 43 43", "",
             "   * - ``status``", "     - cause", "     - remedy"]
    for value, cause, remedy in status_rows():
        lines += [f"   * - ``{value}``", f"     - {rst_text(cause)}", f"     - {rst_text(remedy)}"]
    return "\n".join(lines) + "\n"


def status_md() -> str:
    """The same table in Markdown, for the MyST pages."""
    lines = ["<!-- generated by docs/_ext/dlogdet_docs.py from the members of dlogdet.Status -->", "",
             "| `status` | cause | remedy |", "|---|---|---|"]
    lines += [f"| `{v}` | {md_cell(c)} | {md_cell(r)} |" for v, c, r in status_rows()]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- method options

def estimator_registry():
    """The package's estimator registry module (the one that defines ``REGISTRY`` and ``options_of``), found by
    walking the package, so that moving it changes nothing here."""
    import pkgutil

    import dlogdet
    for info in pkgutil.walk_packages(dlogdet.__path__, "dlogdet."):
        try:
            mod = importlib.import_module(info.name)
        except Exception:
            continue
        if isinstance(getattr(mod, "REGISTRY", None), dict) and callable(getattr(mod, "options_of", None)) \
                and "exact" in mod.REGISTRY:
            return mod
    raise ExtensionError("no module of dlogdet defines the estimator REGISTRY and options_of")


#: options every method takes through :func:`dlogdet.logdet` (documented there, not repeated per method)
COMMON = ("assume", "t", "d", "block_size", "budget", "client")


def method_options(method: str) -> str:
    """reStructuredText: the options of ``method`` (from the registry: its signature and what it passes on),
    with their defaults and, where its function documents them, their descriptions."""
    from numpydoc.docscrape import FunctionDoc

    reg = estimator_registry()
    fn = reg._load(method)
    sig = inspect.signature(fn)
    names = [k for k in reg.options_of(method) if k not in COMMON]
    defaults = {}
    for k in names:
        p = sig.parameters.get(k)
        if p is None:     # passed on to another method
            for other in getattr(importlib.import_module(fn.__module__), "PASSES_TO", ()):
                q = inspect.signature(reg._load(other)).parameters.get(k)
                if q is not None:
                    p = q
                    break
        defaults[k] = "required" if p is None or p.default is inspect.Parameter.empty else repr(p.default)
    lines = [f".. generated by docs/_ext/dlogdet_docs.py from the estimator registry: method {method!r}", "",
             "Options (and defaults): " + ", ".join(
                 f"``{k}``" + ("" if defaults[k] == "required" else f" (``{defaults[k]}``)") for k in names) + ".",
             ""]
    doc = FunctionDoc(fn, config={})
    params = doc["Parameters"]
    if params:
        for prm in params:
            lines.append(f"``{prm.name}``" + (f" : {prm.type}" if prm.type else ""))
            body = [f"   {line}" for line in prm.desc] or ["   (no description)"]
            lines += body
        lines.append("")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- the figure

FIGURE_DATA = DOCS / "_data" / "cost-accuracy.csv"
FIGURE = GENERATED / "cost-accuracy.svg"


def read_figure_data() -> list[dict]:
    rows = [r for r in csv.DictReader(io.StringIO(FIGURE_DATA.read_text(encoding="utf-8")))
            if not r["method"].startswith("#")]
    for r in rows:
        for k in ("seconds", "error_percent"):
            r[k] = float(r[k])
        if not (r["page"].strip() and r["command"].strip()):
            raise ExtensionError(f"{FIGURE_DATA.name}: the row {r} names no benchmark page and command")
        if not (DOCS / "benchmarks" / f"{r['page']}.md").exists():
            raise ExtensionError(f"{FIGURE_DATA.name}: no benchmark page docs/benchmarks/{r['page']}.md")
    return rows


METHOD_STYLE = {  # method -> (color, marker); colors distinguishable in grey and for colour-blind readers
    "exact": ("#222222", "s"),
    "extrapolate": ("#0072B2", "o"),
    "slq": ("#D55E00", "^"),
    "slq + Nyström preconditioner": ("#CC79A7", "v"),
    "nystrom": ("#009E73", "D"),
    "freedecomp": ("#E69F00", "P"),
}


def draw_figure() -> None:
    """The decision guide's figure: measured error against measured time, one marker per method, points of the
    same matrix joined by a thin line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_figure_data()
    floor = 1e-3    # exact results sit on this line (their error is ~1e-13 %, far below the axis)
    fig, ax = plt.subplots(figsize=(9.0, 5.6), dpi=100)
    cases: dict[str, list[dict]] = {}
    for r in rows:
        cases.setdefault(r["case"], []).append(r)
    for case, pts in cases.items():           # each estimate joined to the exact run of the same matrix
        ref = [r for r in pts if r["method"] == "exact"]
        for r in pts:
            if ref and r is not ref[0]:
                ax.plot([ref[0]["seconds"], r["seconds"]], [floor, max(r["error_percent"], floor)],
                        color="#c8c8c8", lw=0.9, ls="--", zorder=1)
    for method, (color, marker) in METHOD_STYLE.items():
        pts = [r for r in rows if r["method"] == method]
        if not pts:
            continue
        ax.scatter([r["seconds"] for r in pts], [max(r["error_percent"], floor) for r in pts], s=80, color=color,
                   marker=marker, label=method, zorder=3, edgecolor="white", linewidth=0.7)
        for r in pts:   # the label's place: up right, or where the data file's `label` column says
            where = {"left": ((-8, 6), "right"), "below": ((-4, -15), "right")}.get(r.get("label", ""),
                                                                                   ((6, 6), "left"))
            ax.annotate(r["case"], (r["seconds"], max(r["error_percent"], floor)), textcoords="offset points",
                        xytext=where[0], ha=where[1], fontsize=9, color="#333333", zorder=4)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(floor / 2.5, 2e3)
    ax.set_xlim(0.08, 600)
    ax.axhline(floor, color="#888888", lw=0.8, ls=":", zorder=0)
    ax.text(560, floor * 0.5, "exact: agrees with LAPACK to ~1e-13 (drawn on this line)", fontsize=9,
            color="#444444", ha="right")
    ax.set_xlabel("wall time (s) on 2 shared CPU cores", fontsize=11)
    ax.set_ylabel("|relative error| of log det (%)", fontsize=11)
    ax.grid(True, which="major", color="#e3e3e3", lw=0.7)
    ax.tick_params(labelsize=10)
    ax.legend(fontsize=9.5, loc="upper right", frameon=True, framealpha=0.95)
    ax.set_title("Measured time and error of each method; a dashed line joins an estimate to the exact run of its "
                 "matrix", fontsize=10.5)
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    plt.close(fig)
    write_if_changed(FIGURE, buf.getvalue())


def figure_table() -> str:
    """The figure's data as a Markdown table with the source of each number (included under the figure)."""
    lines = ["<!-- generated by docs/_ext/dlogdet_docs.py from docs/_data/cost-accuracy.csv -->", "",
             "| method | case | time | error | measured by |", "|---|---|---|---|---|"]
    for r in read_figure_data():
        err = "exact" if r["error_percent"] == 0 else f"{r['error_percent']:g} %"
        lines.append(f"| {r['method']} | {md_cell(r['case_long'])} | {r['seconds']:g} s | {err} | "
                     f"`{r['command']}` ({{doc}}`/benchmarks/{r['page']}`, {md_cell(r['note'])}) |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- notebooks, CLI

def copy_notebooks() -> None:
    """notebooks/*.ipynb -> docs/examples/ (only those whose content changed), and remove stale copies."""
    src = sorted((ROOT / "notebooks").glob("*.ipynb"))
    dest = DOCS / "examples"
    names = {p.name for p in src}
    for p in src:
        q = dest / p.name
        if not q.exists() or not filecmp.cmp(p, q, shallow=False):
            shutil.copy2(p, q)
    for q in dest.glob("*.ipynb"):
        if q.name not in names:
            q.unlink()


def cli_parser():
    """The argument parser of the ``dlogdet`` command, found through its console-script entry point."""
    (ep,) = [e for e in importlib.metadata.entry_points(group="console_scripts") if e.name == "dlogdet"]
    module = importlib.import_module(ep.module)
    return module.build_parser()


# ---------------------------------------------------------------------------------------------- references

def _lookup(target: str) -> tuple[Any, list[Any]] | None:
    """The object a dotted ``dlogdet...`` name denotes and the chain of objects along it, or None."""
    parts = target.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        chain = [obj]
        try:
            for p in parts[i:]:
                obj = getattr(obj, p)
                chain.append(obj)
        except AttributeError:
            return None
        return obj, chain
    return None


def resolve_internal(app: Sphinx, env, node, contnode):
    """missing-reference: a ``dlogdet...`` name that exists but has no page of its own links to the public page
    of the same object, or is shown as code; a name that does not exist is left to fail the build."""
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "").lstrip("~.")
    modname = node.get("py:module") or ""
    clsname = node.get("py:class") or ""
    candidates = [target] if target.startswith("dlogdet") else []
    if modname and not target.startswith("dlogdet"):
        candidates += [f"{modname}.{clsname}.{target}"] if clsname else []
        candidates.append(f"{modname}.{target}")
        # the documented object's own module (a public name's docstring speaks of its module's other names)
        found = _lookup(f"{modname}.{clsname}") if clsname else None
        home = getattr(found[0], "__module__", None) if found else None
        if home and home.startswith("dlogdet"):
            candidates += [f"{home}.{clsname}.{target}", f"{home}.{target}"]
    for cand in candidates:
        found = _lookup(cand)
        if found is None:
            continue
        obj, chain = found
        parts = cand.split(".")
        # the longest prefix whose object is public: link to it (plus the rest of the path)
        offset = len(parts) - len(chain) + 1
        for k in range(len(chain) - 1, -1, -1):
            name = public_name(chain[k])
            if name is None:
                continue
            new = ".".join([name] + parts[offset + k:])
            domain = env.get_domain("py")
            for typ in ("obj",):
                res = domain.resolve_xref(env, node["refdoc"], app.builder, typ, new, node, contnode)
                if res is not None:
                    return res
        if cand.startswith("dlogdet"):            # exists, internal: plain code, no link
            for n in contnode.findall(nodes.Element):
                n["classes"] = [c for c in n.get("classes", []) if c != "xref"]
            return contnode
    return None


# ---------------------------------------------------------------------------------------------- setup

def generate(app: Sphinx, config) -> None:
    for path, text in api_pages().items():
        write_if_changed(path, text)
    write_if_changed(GENERATED / "configuration.rst", config_page())
    write_if_changed(GENERATED / "errors.rst", errors_page())
    write_if_changed(GENERATED / "status.rst", status_page())
    write_if_changed(GENERATED / "status.md", status_md())
    write_if_changed(GENERATED / "cost-accuracy-table.md", figure_table())
    for method in estimator_registry().REGISTRY:
        write_if_changed(GENERATED / f"options-{method}.rst", method_options(method))
    draw_figure()
    copy_notebooks()


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", generate)
    app.connect("autodoc-process-docstring", fill_data_docs)
    app.connect("missing-reference", resolve_internal, priority=900)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}

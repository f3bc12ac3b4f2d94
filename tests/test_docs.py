"""The documentation runs: the Python examples of the guides, with the output they show, and the benchmark pages.

Every ```` ```python ```` block of ``docs/**/*.md`` runs, page by page in one namespace (as a reader would paste
them), in a temporary working directory. A block followed by a ```` ```text ```` block shows its output: what
the block prints must match it (doctest's rules: ``...`` matches anything, whitespace is normalized). A block
whose first line is ``# needs: <what>`` (a Slurm cluster, a file of the reader's) is shown, not run; the reason is
required. Examples in the public docstrings (``>>>``) run as doctests. The site itself is built and checked in a
browser by ``make docs`` (``tests/test_docs_site.py``).
"""

from __future__ import annotations

import contextlib
import doctest
import importlib
import inspect
import io
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SKIP_DIRS = {"_build", "_generated", "jupyter_execute", "_templates"}
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```\s*$", re.S | re.M)
CHECKER = doctest.OutputChecker()
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if not SKIP_DIRS & set(p.relative_to(DOCS).parts))


def examples(text: str) -> list[tuple[str, str | None, int]]:
    """(code, expected output or None, line) of each python block: a text block right after it is its output."""
    fences = [(m.group(1), m.group(2), m.start(), m.end(), text.count("\n", 0, m.start()) + 1)
              for m in FENCE.finditer(text)]
    out = []
    for k, (lang, body, _, end, line) in enumerate(fences):
        if lang != "python":
            continue
        expected = None
        if k + 1 < len(fences):
            nlang, nbody, nstart, _, _ = fences[k + 1]
            if nlang == "text" and not text[end:nstart].strip():
                expected = nbody
        out.append((body, expected, line))
    return out


def run_blocks(blocks, where: str, tmp_path) -> int:
    """Run the blocks in one namespace; check each one's printed output. Returns how many ran."""
    ns: dict = {"__name__": "__docs__"}
    ran = 0
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for code, expected, line in blocks:
            first = code.lstrip().splitlines()[0] if code.strip() else ""
            if first.startswith("# needs"):
                assert first.startswith("# needs: ") and len(first) > len("# needs: ") + 3, \
                    f"{where}:{line}: a block that is not run says why ('# needs: ...')"
                continue
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                exec(compile(code, f"{where}:{line}", "exec"), ns)
            ran += 1
            if expected is not None:
                got = buf.getvalue()
                assert CHECKER.check_output(expected, got, FLAGS), \
                    f"{where}:{line}: the block printed\n{got}\nwhere the page shows\n{expected}"
    finally:
        os.chdir(cwd)
    return ran


PAGES = [p for p in pages() if examples(p.read_text(encoding="utf-8"))]


def test_the_guides_have_examples():
    names = {p.relative_to(DOCS).as_posix() for p in PAGES}
    for page in ("getting-started.md", "guides/out-of-core.md", "guides/estimators.md", "guides/spectra.md",
                 "guides/ntk.md"):
        assert page in names, f"docs/{page} has no runnable python example"


#: pages whose examples take half a minute or more (the NTK guide traces Flax, NNX and Equinox models): run with the
#: slow tests, which CI runs too
SLOW_PAGES = {"guides/ntk.md"}


@pytest.mark.parametrize("page", [pytest.param(p, marks=pytest.mark.slow)
                                  if p.relative_to(DOCS).as_posix() in SLOW_PAGES else p for p in PAGES],
                         ids=[p.relative_to(DOCS).as_posix() for p in PAGES])
def test_page_examples_run(page, tmp_path):
    text = page.read_text(encoding="utf-8")
    if re.search(r"^\s*(import jax|from dlogdet\.ntk|from dlogdet import ntk)", text, re.M):
        pytest.importorskip("jax")
    blocks = examples(text)
    ran = run_blocks(blocks, page.relative_to(ROOT).as_posix(), tmp_path)
    assert ran >= 1 or all(b[0].lstrip().startswith("# needs: ") for b in blocks)


def test_the_checker_fails_on_wrong_output(tmp_path):
    text = "```python\nprint(1 + 1)\n```\n\n```text\n3\n```\n"
    with pytest.raises(AssertionError, match="printed"):
        run_blocks(examples(text), "inline", tmp_path)
    text = "```python\nprint('a long line', 2)\n```\n```text\na ... 2\n```\n"
    assert run_blocks(examples(text), "inline", tmp_path) == 1


# -------------------------------------------------------------------------------------------- docstring examples

def _public_objects():
    import dlogdet
    import dlogdet.ntk
    for module in (dlogdet, dlogdet.ntk):
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                yield f"{module.__name__}.{name}", obj


def _docstring_tests():
    finder = doctest.DocTestFinder(exclude_empty=True)
    out = []
    for name, obj in _public_objects():
        try:
            found = finder.find(obj, name, globs={})
        except ValueError:
            continue
        out += [t for t in found if t.examples]
    return out


DOCTESTS = _docstring_tests()

if DOCTESTS:    # a public docstring with `>>>` examples gets a test; none have them yet
    @pytest.mark.parametrize("test", DOCTESTS, ids=[t.name for t in DOCTESTS])
    def test_docstring_examples(test):
        import numpy as np

        import dlogdet
        test.globs.update({"np": np, "dlogdet": dlogdet})
        runner = doctest.DocTestRunner(optionflags=FLAGS)
        out = io.StringIO()
        runner.run(test, out=out.write)
        assert runner.failures == 0, out.getvalue()


# -------------------------------------------------------------------------------------------- benchmark pages

#: scripts that are not run on their own, and the page that documents them
HELPERS = {"nt_peer": "ntk", "extrapolate_calibration": "extrapolate"}


def test_every_benchmark_has_a_page_with_its_command_and_machine():
    scripts = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py"))
    assert scripts
    for stem in scripts:
        page = DOCS / "benchmarks" / f"{HELPERS.get(stem, stem)}.md"
        assert page.exists(), f"benchmarks/{stem}.py has no page docs/benchmarks/{stem}.md"
        text = page.read_text(encoding="utf-8")
        assert f"benchmarks/{stem}.py" in text, f"{page.name} does not give the command of benchmarks/{stem}.py"
        if stem not in HELPERS:
            assert "**Machine:**" in text and "**Command:**" in text, f"{page.name}: say the machine and command"


def test_every_benchmark_page_is_listed():
    index = (DOCS / "benchmarks" / "index.md").read_text(encoding="utf-8")
    for page in (DOCS / "benchmarks").glob("*.md"):
        if page.stem != "index":
            assert re.search(rf"\b{re.escape(page.stem)}\b", index), f"benchmarks/index.md does not list {page.stem}"


def test_the_figure_data_names_its_sources():
    import csv

    rows = list(csv.DictReader((DOCS / "_data" / "cost-accuracy.csv").open(encoding="utf-8")))
    methods = {r["method"] for r in rows}
    assert {"exact", "extrapolate", "slq", "nystrom", "freedecomp"} <= methods
    for r in rows:
        assert (DOCS / "benchmarks" / f"{r['page']}.md").exists(), r
        assert r["command"].startswith("python benchmarks/"), r
        float(r["seconds"]), float(r["error_percent"])


def _config_paths() -> set[str]:
    """Every key and group of the package's dlogdet.yaml as a dotted path (``dlogdet.memory.budget``, ...)."""
    import yaml

    import dlogdet
    (path,) = Path(dlogdet.__file__).parent.rglob("dlogdet.yaml")

    def walk(d, prefix):
        for k, v in d.items():
            yield f"{prefix}.{k}"
            if isinstance(v, dict):
                yield from walk(v, f"{prefix}.{k}")
    return set(walk(yaml.safe_load(path.read_text(encoding="utf-8"))["dlogdet"], "dlogdet")) | {"dlogdet"}


def _names_an_object(name: str) -> bool:
    """Whether the dotted ``name`` imports (its longest importable module, then attributes), not through a
    deprecated module alias."""
    from dlogdet.core.moved import MOVED

    parts = name.split(".")
    if any(".".join(parts[:i]) in MOVED for i in range(1, len(parts) + 1)):
        return False
    for i in range(len(parts), 0, -1):
        module = ".".join(parts[:i])
        try:
            obj = importlib.import_module(module)
        except ImportError:
            continue
        try:
            for p in parts[i:]:
                obj = getattr(obj, p)
        except AttributeError:
            return False
        return True
    return False


def dotted_names(text: str) -> list[tuple[str, int]]:
    """(name, line) of every ``dlogdet.x.y`` in a page, and of ``dlogdet.x`` for ``from dlogdet import x``."""
    out = [(m.group(0), text.count("\n", 0, m.start()) + 1)
           for m in re.finditer(r"(?<![\w/.-])dlogdet(?:\.[A-Za-z_][\w-]*)+", text)]
    for m in re.finditer(r"^\s*from dlogdet import ([\w, ()]+)$", text, re.M):
        out += [(f"dlogdet.{n.strip()}", text.count("\n", 0, m.start()) + 1)
                for n in m.group(1).strip("()").split(",") if n.strip()]
    return out


def test_the_docs_name_objects_that_exist_at_their_current_paths():
    """Every dotted dlogdet name in the README and the pages is a configuration key or imports as written, and never
    through a deprecated module path (dlogdet.report is dlogdet.ui.report since the folders show the layers)."""
    keys = _config_paths()
    bad = []
    for page in [ROOT / "README.md"] + pages() + sorted((DOCS / "guides").glob("*.rst")):
        for name, line in dotted_names(page.read_text(encoding="utf-8")):
            if name in keys or name.endswith((".yaml", ".py")):
                continue
            if not _names_an_object(name):
                bad.append(f"{page.relative_to(ROOT)}:{line}: {name}")
    assert not bad, "names that do not import as written (moved or misspelled):\n" + "\n".join(bad)


def test_the_name_check_refuses_old_paths_and_misspellings():
    names = dict(dotted_names("see `dlogdet.report.render` and\nfrom dlogdet import dashboard, logdet\n"))
    assert set(names) == {"dlogdet.report.render", "dlogdet.dashboard", "dlogdet.logdet"}
    assert not _names_an_object("dlogdet.report.render")        # a deprecated alias of dlogdet.ui.report
    assert not _names_an_object("dlogdet.dashboard")
    assert not _names_an_object("dlogdet.logdett")
    assert _names_an_object("dlogdet.ui.report.render") and _names_an_object("dlogdet.logdet")
    assert "dlogdet.memory.budget" in _config_paths()


def test_the_docs_name_public_api_not_module_paths():
    """Cross-references ({func}`...`) go to public names; a module path inside the package may move."""
    for page in pages():
        for m in re.finditer(r"\{(?:func|class|meth|mod|data|attr)\}`~?(dlogdet(?:\.\w+)*)", page.read_text()):
            parts = m.group(1).split(".")
            mod = ".".join(parts[:2])
            if len(parts) > 2 and mod not in ("dlogdet.ntk",):
                pytest.fail(f"{page.name}: {m.group(1)} is a module path; name the public object")


def test_the_architecture_page_lists_the_layers_of_the_contracts():
    """docs/architecture.md's table names the layers of pyproject.toml's layers contract, in its order, and every
    folder of the package."""
    import tomllib

    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    layers = next(c for c in contracts["contracts"] if c["type"] == "layers")["layers"]
    expected = [sorted(m.strip().removeprefix("dlogdet.") for m in re.split(r"[:|]", layer)) for layer in layers]
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| [^|]+ \| ((?:`[\w.]+/?`(?:, )?)+) \|", text, re.M)
    on_page = [sorted(re.sub(r"(/|\.py)$", "", f) for f in re.findall(r"`([\w.]+/?)`", row)) for row in rows]
    # the faces are two rows on the page (cli, ui) and two layers in the contract
    assert on_page == expected, f"docs/architecture.md lists {on_page}; the contract has {expected}"
    folders = {p.name for p in (ROOT / "dlogdet").iterdir() if (p / "__init__.py").exists()}
    assert folders <= {m for row in on_page for m in row}, "a folder of dlogdet/ is missing from the page"

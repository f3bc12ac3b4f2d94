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


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(DOCS).as_posix() for p in PAGES])
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
HELPERS = {"nt_peer": "ntk"}


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


def test_the_docs_name_public_api_not_module_paths():
    """The guides speak of public names; a module path may move (importable ones are checked by running)."""
    allowed = {"dlogdet.ntk", "dlogdet.runtime", "dlogdet.dashboard", "dlogdet.report", "dlogdet.progress",
               "dlogdet.spectra", "dlogdet.deploy"}
    for page in pages():
        for m in re.finditer(r"\{(?:func|class|meth|mod|data|attr)\}`~?(dlogdet(?:\.\w+)*)", page.read_text()):
            parts = m.group(1).split(".")
            mod = ".".join(parts[:2])
            if len(parts) > 2 and mod not in ("dlogdet.ntk",):
                pytest.fail(f"{page.name}: {m.group(1)} is a module path; name the public object")
    for name in allowed:   # the modules the guides still name must import
        importlib.import_module(name)

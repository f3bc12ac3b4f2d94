"""The README runs: its Python examples give the output it shows and the LAPACK value; its links lead somewhere.

The README is the landing page (at most ~10 KB): every measured number in it links to the benchmark page that has
its command.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from .test_docs import examples, run_blocks

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def test_readme_first_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    ns: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), ns)   # the first block is the self-contained example
    r, src = ns["r"], ns["src"]
    sign, ref = np.linalg.slogdet(src.dense())
    assert r.sign == sign and abs(r.logdet - ref) <= 1e-10 * abs(ref)
    assert r.log_pivots.shape == (src.n,) and "wall_time" in r.diagnostics


BLOCKS = examples(README.read_text(encoding="utf-8"))
#: blocks that run with the slow tests (their numbers are also checked by tests/test_slq.py, itself slow)
SLOW = ('method="slq"',)


def test_readme_blocks_stand_alone():
    """Each block is one copy-and-paste: it imports what it uses (the NTK one runs in the next test)."""
    assert len(BLOCKS) >= 5
    for code, _, line in BLOCKS:
        assert "import numpy as np, dlogdet" in code, f"README.md:{line}: the example does not stand alone"


@pytest.mark.parametrize("block", [pytest.param(b, marks=[pytest.mark.slow] if any(k in b[0] for k in SLOW) else [],
                                                id=f"line{b[2]}") for b in BLOCKS if "NTKSource" not in b[0]])
def test_readme_example_prints_what_it_shows(block, tmp_path):
    assert block[1] is not None, f"README.md:{block[2]}: show the example's output in a text block after it"
    assert run_blocks([block], "README.md", tmp_path) == 1


def test_readme_ntk_example_runs():
    pytest.importorskip("jax")
    block = next(b for b in re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S) if "NTKSource" in b)
    ns: dict = {}
    exec(compile(block, "README.md", "exec"), ns)
    r, ntk = ns["r"], ns["ntk"]
    sign, ref = np.linalg.slogdet(ntk.dense() + 1e-6 * np.eye(ntk.n))
    assert ntk.n == 2000 and r.sign == sign and abs(r.logdet - ref) <= 1e-9 * abs(ref)


def test_readme_is_a_landing_page():
    text = README.read_text(encoding="utf-8")
    assert len(text.encode("utf-8")) <= 10 * 1024, "the README is a landing page: move details into docs/"
    # the quickstart's two commands, as they have always been
    assert "make demo   # creates .venv" in text and "make test   # creates .venv with the dev extra" in text


def test_readme_links_resolve_and_measurements_link_to_their_pages():
    text = README.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    assert links
    for link in links:
        if "://" not in link:
            assert (ROOT / link).exists(), f"README links to {link}, which does not exist"
    section = text.split("## Measured", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| what")]
    assert rows
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        measured = cells[1]
        assert re.search(r"\d", measured)
        page = re.search(r"\]\((docs/benchmarks/\w+\.md)\)", measured)
        assert page, f"the measured numbers of {cells[0]!r} do not link to their benchmark page"
        stem = Path(page.group(1)).stem
        assert f"benchmarks/{stem}.py" in (ROOT / page.group(1)).read_text(encoding="utf-8")
    # no measured number elsewhere without its page: ratios and percentages live in that table only
    rest = text.replace(section, "")
    loose = re.findall(r"\d+(?:\.\d+)?\s?(?:×|%)", rest)
    assert not loose, f"measured numbers outside the Measured table: {loose}"

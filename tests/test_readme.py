"""The README's runnable Python example runs and gives the LAPACK value (documentation that runs)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_first_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    ns: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), ns)   # the first block is the self-contained example
    r, src = ns["r"], ns["src"]
    sign, ref = np.linalg.slogdet(src.dense())
    assert r.sign == sign and abs(r.logdet - ref) <= 1e-10 * abs(ref)
    assert r.log_pivots.shape == (src.n,) and "wall_time" in r.diagnostics


def test_readme_ntk_example_runs():
    import pytest

    pytest.importorskip("jax")
    block = next(b for b in re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S) if "NTKSource" in b)
    ns: dict = {}
    exec(compile(block, "README.md", "exec"), ns)
    r, ntk = ns["r"], ns["ntk"]
    sign, ref = np.linalg.slogdet(ntk.dense() + 1e-6 * np.eye(ntk.n))
    assert ntk.n == 2000 and r.sign == sign and abs(r.logdet - ref) <= 1e-9 * abs(ref)

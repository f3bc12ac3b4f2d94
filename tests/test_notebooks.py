"""Every notebook in notebooks/ runs top to bottom at its default sizes (nbclient, a fresh Python kernel).

A cell that raises fails the test with the cell's source and the error. The notebooks run in a temporary working
directory, so that what they write (Slurm job logs, Dask scratch) stays out of the checkout; in git they are kept
without outputs (checked here too).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_notebooks_are_there_and_stripped():
    names = [p.stem for p in NOTEBOOKS]
    assert names[:5] == ["01-quickstart", "02-ntk-mnist1d", "03-extrapolation", "04-spectra", "05-clusters"], names
    for p in NOTEBOOKS:
        nb = json.loads(p.read_text())
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                assert cell.get("outputs") == [] and cell.get("execution_count") is None, \
                    f"{p.name}: outputs must be stripped before committing (jupyter nbconvert --clear-output)"
        first = next(c for c in nb["cells"] if c["cell_type"] == "code")
        assert "=" in "".join(first["source"]), f"{p.name}: the first code cell sets the size variables"


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path):
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=False,
                            resources={"metadata": {"path": str(tmp_path)}})
    t0 = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as e:
        pytest.fail(f"{path.name} failed:\n{e}", pytrace=False)
    print(f"\n{path.name}: {time.perf_counter() - t0:.1f} s")
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert outputs, f"{path.name} produced no output at all"

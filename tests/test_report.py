"""Plots of finished runs and ``dlogdet report``; the notebook progress display against the CLI's bar."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest

import dlogdet
from dlogdet.ui import report
from dlogdet.cli import ProgressBar, format_progress, main
from dlogdet.core.errors import InputError
from dlogdet.ui.notebook import ProgressDisplay
from dlogdet.runtime.execute import Progress

PNG = b"\x89PNG\r\n\x1a\n"


def kernel(n: int, seed: int = 0):
    x = np.random.default_rng(seed).uniform(size=(n, 2))
    return dlogdet.KernelSource(x, kernel="matern32", lengthscale=0.3, jitter=1e-6)


@pytest.fixture(scope="module")
def exact():
    return dlogdet.logdet(kernel(600), block_size=100)


def images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)]


def test_exact_run_records_a_small_timeline(exact):
    tl = exact.diagnostics["timeline"]
    assert [r[1] for r in tl["panels"]] == list(range(7))  # 0..6 panels, every change (few panels)
    assert all(a[0] <= b[0] for a, b in zip(tl["panels"], tl["panels"][1:]))
    assert list(tl["memory"]) == ["local"] and all(r[1] > 0 for r in tl["memory"]["local"])
    assert len(json.dumps(tl)) < 20_000


def test_html_report_of_an_exact_run(exact, tmp_path):
    path = tmp_path / "r.html"
    names = report.render(exact, path)
    assert names == ["leading log-determinants", "factorization progress", "memory per worker"]
    page = path.read_text()
    imgs = images(page)
    assert len(imgs) == 3 and all(i.startswith(PNG) and len(i) > 5_000 for i in imgs)
    # self-contained: nothing is fetched from elsewhere
    assert not re.search(r"(src|href)=['\"]?(https?:|//|file:)", page)
    assert repr(exact.logdet) in page and "block size" in page


def test_cli_report_from_the_json_of_logdet(exact, tmp_path, capsys):
    a = kernel(400).dense()
    np.save(tmp_path / "K.npy", a)
    assert main(["logdet", str(tmp_path / "K.npy"), "--block-size", "100", "--json"]) == 0
    out = tmp_path / "result.json"
    out.write_text(capsys.readouterr().out)
    assert main(["report", str(out), "-o", str(tmp_path / "r.png")]) == 0
    assert "factorization progress, memory per worker" in capsys.readouterr().out
    png = (tmp_path / "r.png").read_bytes()
    assert png.startswith(PNG) and len(png) > 20_000
    assert main(["report", str(out), "-o", str(tmp_path / "r.html")]) == 0
    assert len(images((tmp_path / "r.html").read_text())) == 2


def test_cli_report_of_extrapolate_keeps_a_compact_curve(tmp_path, capsys):
    np.save(tmp_path / "K.npy", kernel(500).dense())
    assert main(["extrapolate", str(tmp_path / "K.npy"), "--n-sub", "300", "--subsamples", "2", "--seed", "0",
                 "--json"]) == 0
    text = capsys.readouterr().out
    d = json.loads(text)
    ell = d["diagnostics"]["ell"]
    assert len(ell["k"]) <= report.CURVE_POINTS and ell["k"][0] == 1 and ell["k"][-1] == 300
    assert len(ell["ell"]) == 2 and len(text) < 40_000
    (tmp_path / "e.json").write_text(text)
    assert main(["report", str(tmp_path / "e.json"), "-o", str(tmp_path / "e.html")]) == 0
    assert "scaling-law extrapolation" in capsys.readouterr().out
    assert len(images((tmp_path / "e.html").read_text())) == 1


def test_compact_curves_are_the_curve_at_log_spaced_k():
    ell = np.cumsum(np.random.default_rng(1).standard_normal((3, 1000)), axis=1)
    c = report.compact_curves(ell, points=50)
    k = np.array(c["k"])
    assert k[0] == 1 and k[-1] == 1000 and len(k) <= 50 and np.all(np.diff(k) > 0)
    np.testing.assert_array_equal(np.array(c["ell"]), ell[:, k - 1])
    kk, curves = report._curves(c)
    np.testing.assert_array_equal(curves, ell[:, k - 1])


def test_spectra_of_nystrom_and_a_direct_plot(tmp_path):
    r = dlogdet.logdet(kernel(500), method="nystrom", rank=40, d=1e-2, seed=0)
    assert report.render(r, tmp_path / "n.png") == ["spectra"]
    lam = np.asarray(r.diagnostics["leading_eigenvalues"])
    plt = report._pyplot()
    fig, ax = plt.subplots()
    x = np.linspace(0.1, 2, 50)
    report.plot_spectra(ax, submatrix=lam, exact=lam * 1.1, decompressed=(x, np.ones_like(x)), nystrom=lam)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(t.startswith("submatrix") for t in labels) and "decompressed" in labels
    assert any(t.startswith("exact") for t in labels) and any("Nyström" in t for t in labels)
    plt.close(fig)
    with pytest.raises(InputError, match="at least one"):
        report.plot_spectra()


@pytest.mark.slow   # 11 s: a decompression run first
def test_report_of_a_freedecomp_run_draws_the_decompressed_density(tmp_path):
    """From the JSON alone: freedecomp's result carries ρₙ on the bulk, which the report draws beside the
    submatrix spectrum. A Wishart XᵀX/m (n = 400, m = 1000) decompressed from n₀ = 100: Marchenko–Pastur(0.4),
    so the recorded density integrates to ≈ 1 over [(1−√0.4)², (1+√0.4)²]."""
    import json

    X = np.random.default_rng(0).standard_normal((1000, 400))
    r = dlogdet.logdet(X.T @ X / 1000, method="freedecomp", n0=100, seed=0)
    d = json.loads(r.to_json())
    x, rho = np.asarray(d["diagnostics"]["density"]["x"]), np.asarray(d["diagnostics"]["density"]["density"])
    assert 0 < x.size <= 256 and np.all(np.diff(x) >= 0) and np.all(rho >= 0)
    lo, hi = (1 - 0.4 ** 0.5) ** 2, (1 + 0.4 ** 0.5) ** 2
    assert x[0] > lo - 0.1 and x[-1] < hi + 0.1
    assert abs(np.trapezoid(rho, x) - 1.0) < 0.05
    assert [t for t, _ in report.panels(d)] == ["spectra"]
    fig = report._pyplot().figure()
    ax = fig.add_subplot()
    report.panels(d)[0][1](ax)
    assert "decompressed" in [t.get_text() for t in ax.get_legend().get_texts()]
    report._pyplot().close(fig)
    assert report.render(d, tmp_path / "f.png") == ["spectra"]


def test_report_refuses_what_it_cannot_draw(tmp_path, exact, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("not json at all")
    assert main(["report", str(bad), "-o", str(tmp_path / "x.html")]) == 2
    assert "holds no JSON" in capsys.readouterr().err
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"hello": 1}))
    assert main(["report", str(other), "-o", str(tmp_path / "x.html")]) == 2
    assert "not a dlogdet result" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing.json"), "-o", str(tmp_path / "x.html")]) == 2
    with pytest.raises(InputError, match=".html or .png"):
        report.render(exact, tmp_path / "x.pdf")
    bare = {"logdet": 1.0, "method": "slq", "n": 10, "diagnostics": {}}
    with pytest.raises(InputError, match="nothing to plot"):
        report.render(bare, tmp_path / "x.png")
    with pytest.raises(InputError, match="no extrapolation curve"):
        report.plot_extrapolation(bare)


def test_notebook_display_shows_what_the_cli_bar_shows():
    states = [Progress(k, 5, k * (11 - k) // 2, 15, 1 - ((5 - k) / 5) ** 3, 0.5 * k) for k in range(6)]
    text = io.StringIO()
    disp = ProgressDisplay(text, min_interval=0.0)
    cli = io.StringIO()
    bar = ProgressBar(cli, min_interval=0.0, refresh=None)
    for p in states:
        disp(p)
        bar(p)
    disp.close()
    bar.close()
    assert disp.lines == [format_progress(p) for p in states]
    drawn = [s.strip() for s in cli.getvalue().split("\r") if s.strip()]
    assert drawn == disp.lines
    assert text.getvalue().splitlines()[-1] == f"dlogdet: {format_progress(states[-1])}"
    assert "panels 5/5" in disp.lines[-1] and "tiles 15/15" in disp.lines[-1]


def test_notebook_display_follows_a_run():
    disp = ProgressDisplay(io.StringIO(), min_interval=0.0)
    r = dlogdet.logdet(kernel(300), block_size=50, progress=disp)
    assert np.isfinite(r.logdet)
    assert disp.last.panels_done == disp.last.panels_total == 6
    assert disp.lines[-1].startswith("[########################] 100%")

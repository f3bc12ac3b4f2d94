"""The command line: ``dlogdet logdet`` / ``dlogdet demo``, their output, exit codes and progress bar.

Numbers are checked against ``numpy.linalg.slogdet`` on the same matrix to 1e-9 relative (the matrices here are
well conditioned, so the tiled and the LAPACK factorizations agree to ~1e-14). Most tests call
:func:`dlogdet.cli.main` in-process (fast); a few run ``python -m dlogdet`` as a subprocess to check what a
user's shell sees: the exit code, one JSON object on stdout, one error line on stderr, no traceback.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest

import dlogdet
from dlogdet import cli
from dlogdet.runtime.execute import Progress

N = 600
BS = 128
RTOL = 1e-9
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --------------------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------------------

def run_cli(*args: str, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m dlogdet ARGS`` in a subprocess, text output captured."""
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "dlogdet", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=e)


def run_cli_tty(*args: str, timeout: float = 120) -> tuple[int, str, str]:
    """``python -m dlogdet ARGS`` with stderr on a pseudo-terminal: (exit code, stdout, what the terminal got)."""
    pty = pytest.importorskip("pty")
    master, slave = pty.openpty()
    try:
        p = subprocess.Popen([sys.executable, "-m", "dlogdet", *args], stdout=subprocess.PIPE, stderr=slave,
                             stdin=subprocess.DEVNULL, cwd=REPO)
    finally:
        os.close(slave)
    chunks = []
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not data:
                break
            chunks.append(data)
        out = p.stdout.read().decode()
        rc = p.wait(timeout=timeout)
    finally:
        os.close(master)
        p.stdout.close()
    # the terminal turns "\n" into "\r\n"; undo that so that a bare "\r" means a redrawn line
    return rc, out, b"".join(chunks).decode().replace("\r\n", "\n")


def rel_err(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def assert_matches_numpy(res: dict, m: np.ndarray) -> None:
    sign, ld = np.linalg.slogdet(m)
    assert res["sign"] == float(sign)
    assert rel_err(res["logdet"], float(ld)) < RTOL, (res["logdet"], float(ld))


def assert_one_error_line(err: str) -> str:
    """stderr holds exactly one line, ``dlogdet: error: ...``, and no traceback; returns that line."""
    lines = err.strip("\n").splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("dlogdet: error: "), err
    assert "Traceback" not in err
    return lines[0]


def spd(n: int = N, seed: int = 0) -> np.ndarray:
    """A well-conditioned SPD matrix, exactly symmetric."""
    g = np.random.default_rng(seed).standard_normal((n, n))
    a = g @ g.T / n + np.eye(n)
    return (a + a.T) / 2


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The input files of the tests, written once."""
    d = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(1)
    out = {}

    def save(name, a):
        p = d / f"{name}.npy"
        np.save(p, a)
        out[name] = (str(p), a)

    a = spd()
    save("spd", a)
    g = rng.standard_normal((N, N))
    save("sym", (g + g.T) / 2)                        # symmetric indefinite
    save("gen", g + 0.5 * np.eye(N))                  # nonsymmetric
    save("nonsquare", rng.standard_normal((N, N - 1)))
    save("three_d", np.zeros((4, 4, 4)))
    save("ints", np.eye(8, dtype=np.int64))
    nan = a.copy()
    nan[5, 7] = nan[7, 5] = np.nan
    save("nan", nan)
    indef = 2 * np.eye(N)
    indef[300, 300] = -1.0                            # leading 300x300 block PD, 301x301 not: fails at row 300
    save("indefinite", indef)
    save("small", spd(200, seed=3))

    txt = d / "matrix.txt"
    txt.write_text("1 0\n0 1\n")
    out["txt"] = (str(txt), None)
    fake = d / "fake.npy"
    fake.write_text("this is not a .npy file\n")
    out["fake_npy"] = (str(fake), None)
    out["missing"] = (str(d / "missing.npy"), None)

    import zarr
    zpath = d / "spd.zarr"
    z = zarr.create_array(store=str(zpath), shape=(N, N), chunks=(BS, BS), dtype="f8")
    z[:] = a
    out["zarr"] = (str(zpath), a)
    return out


def call(capsys, *argv: str) -> tuple[int, str, str]:
    """``main(argv)`` in-process: (exit code, stdout, stderr)."""
    rc = cli.main(list(argv))
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


# --------------------------------------------------------------------------------------------------------------
# dlogdet logdet: results
# --------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, assume", [("spd", "spd"), ("zarr", "spd"), ("sym", "sym"), ("gen", "gen")])
def test_logdet_json_matches_numpy(capsys, files, name, assume):
    path, a = files[name]
    rc, out, err = call(capsys, "logdet", path, "--assume", assume, "--block-size", str(BS), "--json")
    assert rc == 0, err
    res = json.loads(out)                             # exactly one JSON document on stdout
    assert_matches_numpy(res, a)
    assert res["method"] == "exact" and res["n"] == N and res["assume"] == assume
    assert res["diagnostics"]["block_size"] == BS
    if assume == "sym":
        w = np.linalg.eigvalsh(a)
        assert res["inertia"] == {"positive": int(np.sum(w > 0)), "negative": int(np.sum(w < 0)), "zero": 0}
        assert res["inertia"]["negative"] > 0         # really indefinite


def test_logdet_t_and_d(capsys, files):
    path, a = files["spd"]
    rc, out, err = call(capsys, "logdet", path, "--t", "2.5", "--d", "0.75", "--block-size", "200", "--json")
    assert rc == 0, err
    assert_matches_numpy(json.loads(out), 2.5 * a + 0.75 * np.eye(N))


def test_logdet_budget_and_backend(capsys, files):
    path, a = files["spd"]
    rc, out, err = call(capsys, "logdet", path, "--budget", "64MiB", "--backend", "numpy", "--json")
    assert rc == 0, err
    res = json.loads(out)
    assert_matches_numpy(res, a)
    assert res["diagnostics"]["backend"] == "numpy"


def test_logdet_human_summary(capsys, files):
    path, a = files["sym"]
    rc, out, err = call(capsys, "logdet", path, "--assume", "sym", "--block-size", str(BS))
    assert rc == 0, err
    assert err == ""                                  # no progress bar: stderr is not a terminal here
    fields = dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in out.strip().splitlines())
    for key in ("logdet", "sign", "n", "dtype", "assume", "inertia", "wall time", "block size", "tasks",
                "scheduler"):
        assert key in fields, out
    sign, ld = np.linalg.slogdet(a)
    assert rel_err(float(fields["logdet"]), float(ld)) < RTOL
    assert fields["sign"] == f"{sign:+.0f}"
    assert fields["n"] == str(N) and fields["dtype"] == "float64" and fields["assume"] == "sym"
    assert fields["block size"].startswith(f"{BS} (5 panels")
    assert fields["scheduler"].startswith("threads")


def test_verbose_logs_info_and_leaves_logging_as_it_was(capsys, files):
    logger = logging.getLogger("dlogdet")
    before = (list(logger.handlers), logger.level)
    rc, out, err = call(capsys, "-v", "logdet", files["spd"][0], "--block-size", str(BS), "--json")
    assert rc == 0
    assert "INFO" in err and "n=600" in err
    assert (list(logger.handlers), logger.level) == before
    rc, out, err = call(capsys, "logdet", files["spd"][0], "--block-size", str(BS), "--json", "-v")
    assert rc == 0 and "INFO" in err                  # -v also after the command


def test_version_and_help(capsys):
    rc, out, _ = call(capsys, "--version")
    assert rc == 0 and out.strip() == f"dlogdet {dlogdet.__version__}"
    rc, out, _ = call(capsys, "logdet", "--help")
    assert rc == 0 and "--assume" in out and "--scheduler" in out


# --------------------------------------------------------------------------------------------------------------
# exit codes and error lines
# --------------------------------------------------------------------------------------------------------------

BAD_INPUTS = {
    # id: (argv with {name} placeholders for files, a fragment the message must hold)
    "missing file": (["logdet", "{missing}"], "no such file"),
    "text file": (["logdet", "{txt}"], "cannot tell the format"),
    "text file named .npy": (["logdet", "{fake_npy}"], "cannot read"),
    "not square": (["logdet", "{nonsquare}"], "square"),
    "3-D array": (["logdet", "{three_d}"], "2-D"),
    "integer dtype": (["logdet", "{ints}"], "dtype"),
    "not symmetric for spd": (["logdet", "{gen}", "--block-size", "128"], "not symmetric"),
    "NaN entry": (["logdet", "{nan}", "--block-size", "128"], "row 5, column 7"),
    "indefinite for spd": (["logdet", "{indefinite}", "--block-size", "128"], "row 300"),
    "non-finite t": (["logdet", "{spd}", "--t", "nan"], "t must be finite"),
    "bad budget": (["logdet", "{spd}", "--budget", "lots"], "memory size"),
    "block size 0": (["logdet", "{spd}", "--block-size", "0"], "--block-size"),
    "block size negative": (["logdet", "{spd}", "--block-size", "-5"], "--block-size"),
    "block size not a number": (["logdet", "{spd}", "--block-size", "big"], "--block-size"),
    "unknown assume": (["logdet", "{spd}", "--assume", "pd"], "--assume"),
    "no path": (["logdet"], "PATH"),
    "no command": ([], "COMMAND"),
    "unknown command": (["solve", "{spd}"], "invalid choice"),
    "unknown option": (["logdet", "{spd}", "--frobnicate"], "unrecognized arguments"),
    "workers and scheduler": (["logdet", "{spd}", "--workers", "2", "--scheduler", "tcp://x:1"], "not allowed"),
    "workers 0": (["logdet", "{spd}", "--workers", "0"], "--workers"),
    "demo n 1": (["demo", "--n", "1"], "--n"),
}


def _argv(template, files):
    return [a.format(**{k: v[0] for k, v in files.items()}) for a in template]


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_bad_input_exit_2_one_line(capsys, files, case):
    argv, fragment = BAD_INPUTS[case]
    rc, out, err = call(capsys, *_argv(argv, files))
    assert rc == 2
    assert out == ""
    line = assert_one_error_line(err)
    assert fragment in line


@pytest.mark.parametrize("case", ["missing file", "indefinite for spd", "block size 0", "no command"])
def test_bad_input_subprocess(files, case):
    argv, fragment = BAD_INPUTS[case]
    p = run_cli(*_argv(argv, files))
    assert p.returncode == 2, p.stderr
    assert p.stdout == ""
    assert fragment in assert_one_error_line(p.stderr)


def test_failure_exit_1_and_debug(capsys, files, monkeypatch):
    def boom(*args, **kwargs):
        raise ArithmeticError("the pivots overflowed")

    monkeypatch.setattr(dlogdet.api, "logdet", boom)
    rc, out, err = call(capsys, "logdet", files["spd"][0])
    assert rc == 1 and out == ""
    line = assert_one_error_line(err)
    assert "ArithmeticError: the pivots overflowed" in line and "--debug" in line
    with pytest.raises(ArithmeticError, match="overflowed"):
        cli.main(["logdet", files["spd"][0], "--debug"])
    with pytest.raises(ArithmeticError, match="overflowed"):
        cli.main(["--debug", "logdet", files["spd"][0]])


def test_dlogdet_error_exit_1(capsys, files, monkeypatch):
    def singular(*args, **kwargs):
        raise dlogdet.SingularMatrixError("an exactly zero LU pivot at global row 0", row=0)

    monkeypatch.setattr(dlogdet.api, "logdet", singular)
    rc, out, err = call(capsys, "logdet", files["spd"][0], "--assume", "gen")
    assert rc == 1
    assert "zero LU pivot at global row 0" in assert_one_error_line(err)


def test_input_error_with_debug_reraises(files):
    with pytest.raises(dlogdet.SourceError):
        cli.main(["logdet", files["missing"][0], "--debug"])


def test_keyboard_interrupt_exit_130(capsys, files, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(dlogdet.api, "logdet", interrupted)
    rc, out, err = call(capsys, "logdet", files["spd"][0])
    assert rc == 130
    assert "Traceback" not in err and err.strip() == "dlogdet: interrupted"


# --------------------------------------------------------------------------------------------------------------
# end to end through `python -m dlogdet`
# --------------------------------------------------------------------------------------------------------------

def test_subprocess_json_one_object_no_progress(files):
    path, a = files["spd"]
    p = run_cli("logdet", path, "--block-size", str(BS), "--json")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)                         # raises if stdout holds anything but one JSON document
    assert_matches_numpy(res, a)
    assert "\r" not in p.stderr


def test_progress_bar_on_a_terminal(files):
    path, a = files["spd"]
    rc, out, term = run_cli_tty("logdet", path, "--block-size", "64")
    assert rc == 0, term
    assert "\r[" in term                               # redrawn in place
    last = term.rstrip("\n").split("\r")[-1]
    assert "100%" in last and "panels 10/10" in last and "tiles 55/55" in last
    assert term.endswith("\n") and term.count("\n") == 1   # one line, ended once
    assert "logdet" in out and "\r" not in out


@pytest.mark.parametrize("flag", ["--no-progress", "--json"])
def test_no_progress_bar_with_flag(files, flag):
    rc, out, term = run_cli_tty("logdet", files["spd"][0], "--block-size", "64", flag)
    assert rc == 0, term
    assert "\r" not in term and "%" not in term


@pytest.mark.cluster
def test_workers_end_to_end(files):
    path, a = files["small"]
    p = run_cli("logdet", path, "--workers", "2", "--block-size", "64", "--json")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert_matches_numpy(res, a)
    assert res["diagnostics"]["scheduler"].startswith("distributed (tcp://127.0.0.1:")
    assert res["diagnostics"]["workers"] == 2
    assert re.search(r"dashboard: http://127\.0\.0\.1:\d+/status", p.stderr), p.stderr


@pytest.mark.cluster
def test_workers_bad_input_exit_2(files):
    p = run_cli("logdet", files["nan"][0], "--workers", "2", "--block-size", "128")
    assert p.returncode == 2
    # the CLI's workers are silenced: no "Compute Failed" traceback, only the dashboard and one error line
    lines = p.stderr.strip().splitlines()
    assert "Traceback" not in p.stderr and "Compute Failed" not in p.stderr, p.stderr
    assert [ln for ln in lines if "dashboard" not in ln] == [lines[-1]]
    assert lines[-1].startswith("dlogdet: error: the matrix holds NaN")


@pytest.mark.cluster
def test_demo(tmp_path):
    p = run_cli("demo", "--n", "500", "--workers", "2", timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    out = p.stdout
    assert re.search(r"dashboard: http://127\.0\.0\.1:\d+/status", out), out
    ours = float(re.search(r"dlogdet logdet\s+(\S+)", out).group(1))
    ref = float(re.search(r"numpy slogdet\s+(\S+)", out).group(1))
    assert rel_err(ours, ref) < 1e-8
    for key in ("abs difference", "rel difference", "dlogdet wall time", "numpy wall time", "block size",
                "tasks", "peak memory/worker"):
        assert key in out


@pytest.mark.cluster
def test_demo_json():
    p = run_cli("demo", "--n", "300", "--workers", "2", "--kernel", "matern32", "--json", timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    res = json.loads(p.stdout)
    assert res["ok"] is True and res["rel_diff"] < 1e-8 and res["kernel"] == "matern32"
    assert rel_err(res["dlogdet"]["logdet"], res["numpy"]["logdet"]) < 1e-8
    assert res["dashboard"].startswith("http://127.0.0.1:")
    assert "dashboard: http://127.0.0.1:" in p.stderr


def test_demo_reference_must_fit_in_memory(capsys):
    rc, out, err = call(capsys, "demo", "--n", str(10**8))
    assert rc == 2
    assert "too large for the reference" in assert_one_error_line(err)


# --------------------------------------------------------------------------------------------------------------
# the progress bar, unit by unit
# --------------------------------------------------------------------------------------------------------------

def test_format_progress():
    p = Progress(panels_done=3, panels_total=10, tiles_done=27, tiles_total=55, work_fraction=0.5, elapsed=10.0)
    s = cli.format_progress(p, width=10)
    assert s.startswith("[#####.....]  50%")
    assert "tiles 27/55" in s and "panels 3/10" in s
    assert "elapsed 00:10" in s and "ETA 00:10" in s
    assert "\r" not in s and "\n" not in s


def test_format_progress_edges():
    start = Progress(0, 10, 0, 55, 0.0, 0.2)
    assert "ETA --:--" in cli.format_progress(start) and "  0%" in cli.format_progress(start)
    long = Progress(1, 100, 100, 5050, 0.01, 3725.0)
    assert "elapsed 1:02:05" in cli.format_progress(long)
    done = Progress(10, 10, 55, 55, 1.0, 42.0)
    s = cli.format_progress(done)
    assert "100%" in s and "ETA 00:00" in s and "#" * 24 in s


def test_progress_bar_stream():
    buf = io.StringIO()
    with cli.ProgressBar(buf, min_interval=0.0, refresh=None) as bar:
        for k in range(5):
            bar(Progress(k, 4, 0, 10, min(k / 4, 1.0), float(k)) if k < 4 else Progress(4, 4, 10, 10, 1.0, 4.0))
    s = buf.getvalue()
    assert s.count("\r") == 5 and s.endswith("\n") and s.count("\n") == 1
    assert "100%" in s.split("\r")[-1]


def test_progress_bar_throttles_but_draws_the_last_state():
    buf = io.StringIO()
    with cli.ProgressBar(buf, min_interval=3600.0, refresh=None) as bar:
        for k in range(1, 5):
            bar(Progress(k, 4, k, 4, k / 4, float(k)))
    s = buf.getvalue()
    assert s.count("\r") == 2                          # the first and the final state
    assert "panels 4/4" in s.split("\r")[-1]


def test_progress_bar_refreshes_elapsed_during_a_long_panel():
    buf = io.StringIO()
    bar = cli.ProgressBar(buf, min_interval=0.0, refresh=0.02)
    bar(Progress(1, 4, 4, 10, 0.4, 0.0))
    time.sleep(0.2)
    bar.close()
    draws = buf.getvalue().rstrip("\n").split("\r")[1:]
    assert len(draws) >= 3 and all("panels 1/4" in d for d in draws)


def test_progress_bar_silent_when_nothing_drawn():
    buf = io.StringIO()
    with cli.ProgressBar(buf):
        pass
    assert buf.getvalue() == ""


def test_progress_dataclass_is_what_the_bar_reads():
    # the bar reads these fields of dlogdet.runtime.Progress; a rename there must fail here, not at a user's run
    names = {f.name for f in dataclasses.fields(Progress)}
    assert {"panels_done", "panels_total", "tiles_done", "tiles_total", "work_fraction", "elapsed"} <= names


def test_demo_exit_1_when_the_values_disagree(capsys, monkeypatch):
    import contextlib
    import types

    @contextlib.contextmanager
    def fake_cluster(n_workers, dashboard_address="127.0.0.1:0"):
        yield types.SimpleNamespace(dashboard_link="http://127.0.0.1:1/status")

    def off_by_a_bit(src, **kwargs):
        sign, ld = np.linalg.slogdet(src.dense())
        return dlogdet.LogdetResult(logdet=ld * (1 + 1e-6), sign=sign, method="exact", n=src.n, dtype="float64",
                                    diagnostics={"wall_time": 0.0, "block_size": 50, "n_panels": 1, "n_tasks": 3})

    monkeypatch.setattr(cli, "local_client", fake_cluster)
    monkeypatch.setattr(dlogdet.api, "logdet", off_by_a_bit)
    rc, out, err = call(capsys, "demo", "--n", "50", "--no-progress")
    assert rc == 1
    assert "numpy slogdet" in out
    line = assert_one_error_line(err)
    assert "disagree" in line and "relative difference 1.0" in line

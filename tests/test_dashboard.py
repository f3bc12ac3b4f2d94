"""The live page /dlogdet: its state machine on planted key sequences, and the page in a real headless browser.

The browser test drives Debian's ``chromium`` through ``chromium-driver`` and Selenium (installed by .ci/run); it
is skipped when either is missing. It loads the page before a run on a LocalCluster on loopback, reads the tile
grid's data out of the page's BokehJS document while the run goes on, checks that the grid moves from waiting to
done, and saves screenshots under the test's temporary directory.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from dlogdet.ui.dashboard import DONE, IN_MEMORY, ON_DISK, OUTSIDE, WAITING, DashboardPlugin, _parse
from dlogdet.runtime.timeline import Series, Timeline

TOK = "abc123"


def keys_spd(nt: int, tok: str = TOK, store: bool = False) -> list:
    """The keys of the engine's graph for nt panels, in an order a scheduler may finish them."""
    out = []
    for k in range(nt):
        out.append((f"potrf-{tok}", k))
        out.append((f"done-{tok}", k) if store else (f"pivots-{tok}", k))
        out += [(f"trsm-{tok}", i, k) for i in range(k + 1, nt)]
        out += [(f"syrk-{tok}" if i == j else f"gemm-{tok}", i, j, k) for i in range(k + 1, nt) for j in
                range(k + 1, i + 1)]
    return out + [(f"logdet-{tok}",)]


def test_parse_keys():
    assert _parse(("gemm-" + TOK, 3, 2, 1)) == ("gemm", TOK, (3, 2, 1))
    assert _parse(("potrf-" + TOK, 0)) == ("potrf", TOK, (0,))
    assert _parse(("logdet-" + TOK,)) == ("logdet", TOK, ())
    assert _parse("gemm-xyz") is None              # not a tuple key
    assert _parse(("rechunk-merge-9", 0, 1)) is None  # another graph's keys
    assert _parse(("trsm-" + TOK, "a")) is None


def test_board_follows_a_memory_run():
    nt = 4
    plugin = DashboardPlugin()
    keys = keys_spd(nt)
    plugin.update_graph(None, tasks=keys)
    b = plugin.latest()
    assert (b.nt, b.store, b.gen) == (nt, False, False)
    assert b.tiles_total == nt * (nt + 1) // 2
    assert np.all(b.grid[np.triu_indices(nt, 1)] == OUTSIDE)
    assert np.all(b.grid[np.tril_indices(nt)] == WAITING)
    step0 = [k for k in keys if k[1:2] == (0,) or (len(k) == 4 and k[3] == 0) or (len(k) == 3 and k[2] == 0)]
    for key in step0:
        plugin.transition(key, "processing", "memory")
    assert b.grid[0, 0] == DONE and np.all(b.grid[1:, 0] == DONE)   # first column factored
    assert np.all(b.grid[1:, 1:][np.tril_indices(nt - 1)] == IN_MEMORY)  # trailing tiles updated, in memory
    assert b.panels_done == 1
    p = b.progress()
    assert (p.panels_done, p.panels_total, p.tiles_done) == (1, nt, nt)
    assert p.eta is not None and p.eta >= 0
    for key in keys:
        plugin.transition(key, "processing", "memory")
    assert np.all(b.grid[np.tril_indices(nt)] == DONE)
    assert b.panels_done == nt and b.t_end is not None
    snap = plugin.snapshot()["run"]
    assert snap["counts"] == {"waiting": 0, "in memory": 0, "on disk": 0, "done": 10} and snap["finished"]


def test_board_of_a_store_run_and_of_a_resumed_one():
    plugin = DashboardPlugin()
    keys = keys_spd(3, store=True)
    plugin.update_graph(None, tasks=keys)
    b = plugin.latest()
    assert b.store
    plugin.transition((f"potrf-{TOK}", 0), "processing", "memory")
    plugin.transition((f"gemm-{TOK}", 2, 1, 0), "processing", "memory")
    assert b.grid[2, 1] == ON_DISK and b.grid[0, 0] == DONE and b.grid[1, 1] == WAITING
    plugin.transition((f"potrf-{TOK}", 0), "processing", "erred")
    assert b.failed and "potrf" in b.failed
    # a resumed run submits the steps from `start` on: earlier columns are done, the rest is on disk
    later = [k for k in keys_spd(5, "def", store=True) if not (len(k) > 1 and min(k[1:]) < 2)]
    plugin.update_graph(None, tasks=later)
    r = plugin.latest()
    assert r.token == "def" and r.nt == 5 and r.panels_done == 2
    assert all(r.grid[i, j] == DONE for j in range(2) for i in range(j, 5))
    assert r.grid[2, 2] == ON_DISK and r.grid[4, 3] == ON_DISK and r.grid[0, 1] == OUTSIDE


def test_board_of_a_general_run_covers_the_whole_matrix():
    plugin = DashboardPlugin()
    keys = [(f"getrf-{TOK}", 0), (f"getrf-{TOK}", 1), (f"trsmrow-{TOK}", 0, 1), (f"trsm-{TOK}", 1, 0)]
    plugin.update_graph(None, tasks=keys)
    b = plugin.latest()
    assert b.gen and b.tiles_total == 4 and not np.any(b.grid == OUTSIDE)
    plugin.transition((f"trsmrow-{TOK}", 0, 1), "processing", "memory")
    assert b.grid[0, 1] == DONE


def test_run_event_sets_the_budget_and_peaks():
    plugin = DashboardPlugin()
    plugin.log_event("dlogdet-run", {"run": TOK, "budget": 1234, "panels": 2})
    plugin.update_graph(None, tasks=keys_spd(2))
    assert plugin.latest().budget == 1234
    plugin.log_event("dlogdet-budget", {"run": TOK, "worker": "tcp://w", "tracked": 99})
    plugin.log_event("dlogdet-budget", {"run": TOK, "worker": "tcp://w", "tracked": 50})
    assert plugin.latest().peaks == {"tcp://w": 99}
    plugin.log_event("other", {"run": TOK, "budget": 1})
    assert plugin.latest().budget == 1234


def test_series_stays_small_and_keeps_the_ends():
    s = Series(max_points=16)
    for i in range(10_000):
        s.add(i * 0.1, i)
    rows = s.rows()
    assert len(rows) <= 17
    assert rows[0] == [0.0, 0] and rows[-1][1] == 9999
    assert all(a[0] < b[0] for a, b in zip(rows, rows[1:]))
    tl = Timeline(max_points=8)
    for i in range(100):
        tl.progress(i, i // 10)
        tl.sample("w", i, 100 + i, i)
    d = tl.to_dict()
    assert [r[1] for r in d["panels"]] == sorted(r[1] for r in d["panels"])  # only changes, in order
    assert d["panels"][-1][1] == 9 and len(d["memory"]["w"]) <= 9
    assert d["memory_columns"] == ["t", "rss_bytes", "tracked_bytes"]


# ------------------------------------------------------------------------------------------- on a real cluster


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster, \
            Client(cluster, set_as_default=False) as c:
        yield c


def _source(n: int):
    import dlogdet

    x = np.random.default_rng(0).uniform(size=(n, 3))
    return dlogdet.KernelSource(x, kernel="matern32", lengthscale=0.5, jitter=1e-3)


@pytest.mark.cluster
def test_a_run_adds_the_page_and_fills_the_grid(client):
    import dlogdet
    from dlogdet.ui import dashboard

    import dask

    # samples every 20 ms (default 250 ms): on an idle machine this run can finish between two default samples,
    # and the timeline's tracked bytes below must have seen the run
    with dask.config.set({"dlogdet.progress-interval": 0.02}):
        r = dlogdet.logdet(_source(1200), client=client, block_size=200, budget="64MiB")
    # the run registered the plugin by itself, and the page is served by the scheduler
    assert "dlogdet-dashboard" in client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.plugins))
    url = dashboard.url(client)
    assert url.startswith("http://127.0.0.1:") and url.endswith("/dlogdet")
    with urllib.request.urlopen(url, timeout=30) as resp:
        html = resp.read().decode()
    # a Bokeh document of the dashboard (its content comes over the websocket: the browser test reads it), with
    # the link to it in the dashboard's navigation bar; a path next to it is not served
    assert resp.status == 200 and "Bokeh.safely" in html and 'href="dlogdet"' in html
    with pytest.raises(urllib.error.HTTPError, match="404"):
        urllib.request.urlopen(url + "-nothing", timeout=30)
    snap = dashboard.snapshot(client)
    run = snap["run"]
    assert run["token"] == r.diagnostics["token"] and run["nt"] == 6
    assert run["panels_done"] == 6 and run["finished"] and run["counts"]["done"] == 21
    assert all(m["limit"] == 64 * 2**20 and m["limit_kind"] == "budget" for m in snap["memory"])
    assert any(m["peak"] > 0 for m in snap["memory"])
    # the exact engine's compact timeline: panels over time and tracked bytes per worker
    tl = r.diagnostics["timeline"]
    assert tl["panels"][0][1] == 0 and tl["panels"][-1][1] == 6
    assert set(tl["memory"]) == {"0", "1"}
    assert max(row[2] or 0 for rows in tl["memory"].values() for row in rows) > 0


# ------------------------------------------------------------------------------------------------- the browser

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
CHROMEDRIVER = shutil.which("chromedriver")

READ_PAGE = """
const doc = (window.Bokeh && Bokeh.documents) ? Bokeh.documents[0] : null;
if (!doc) { return null; }
let states = null;
for (const m of doc.all_models) {
  const d = m.data;
  if (!d) { continue; }
  const s = (d instanceof Map) ? d.get('state') : d['state'];
  if (s !== undefined) { states = Array.from(s); }
}
const div = doc.get_model_by_name('dlogdet-status');
return {states: states, header: div ? div.text : null};
"""


@pytest.fixture
def browser(tmp_path):
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1000",
                 f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path, prefix='chromium-')}"):
        opts.add_argument(flag)
    # the driver found on PATH, so that Selenium never tries to download one
    drv = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    drv.set_page_load_timeout(60)
    try:
        yield drv
    finally:
        drv.quit()


def _read(drv) -> dict | None:
    try:
        return drv.execute_script(READ_PAGE)
    except Exception:  # the page is reloading or BokehJS not yet up
        return None


def _wait(drv, pred, timeout: float, what: str) -> dict:
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        last = _read(drv)
        if last is not None and pred(last):
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; the page last showed {last!r}")


@pytest.mark.cluster
@pytest.mark.slow
def test_page_in_a_headless_browser(client, browser, tmp_path):
    import dlogdet
    from dlogdet.ui import dashboard

    url = dashboard.install(client)
    browser.get(url)
    _wait(browser, lambda s: s["header"] is not None, 60, "the page's BokehJS document")
    # loaded before the run (or after an earlier test's run): the grid follows the run submitted next
    nt = 24
    out: dict = {}

    def run():
        try:
            out["result"] = dlogdet.logdet(_source(nt * 250), client=client, block_size=250, budget="256MiB")
        except BaseException as e:  # reported by the assertion below
            out["error"] = e

    th = threading.Thread(target=run, daemon=True)
    th.start()
    n_tiles = nt * (nt + 1) // 2
    s = _wait(browser, lambda s: s["states"] is not None and len(s["states"]) == n_tiles, 60,
              f"the grid of the new run ({n_tiles} tiles)")
    seen = []  # done counts the browser showed while the run went on
    shot_mid = tmp_path / "dlogdet-dashboard-running.png"
    while th.is_alive():
        s = _read(browser)
        if s and s["states"] is not None and len(s["states"]) == n_tiles:
            done = s["states"].count("done")
            if not seen or done != seen[-1]:
                seen.append(done)
            if 0 < done < n_tiles and not shot_mid.exists():
                browser.save_screenshot(str(shot_mid))
        time.sleep(0.1)
    th.join()
    assert "error" not in out, out.get("error")
    # the run has returned (th joined): at its next refresh the page shows every tile done and the run finished
    final = _wait(browser, lambda s: s["states"] is not None and len(s["states"]) == n_tiles
                  and s["states"].count("done") == n_tiles and "finished" in (s["header"] or ""), 30,
                  "every tile done and the run finished")
    shot = tmp_path / "dlogdet-dashboard.png"
    browser.save_screenshot(str(shot))
    print(f"\nscreenshots: {shot_mid} {shot}; done counts seen during the run: {seen}")
    # the grid updated in the browser: intermediate states between none and all tiles done, never going back
    inter = [d for d in seen if 0 < d < n_tiles]
    assert len(inter) >= 2, f"the page showed too few intermediate states: {seen}"
    assert seen == sorted(seen), seen
    assert f"panels {nt}/{nt}" in final["header"] and "finished" in final["header"]
    for p in (shot_mid, shot):
        assert p.exists() and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000


@pytest.mark.cluster
def test_runs_without_a_factorization_add_the_page_too():
    # spectra and products run no accounting, but the cluster they used serves the page all the same
    import dlogdet
    from distributed import Client, LocalCluster

    from dlogdet.ui import dashboard

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster, set_as_default=False) as c:
        sp = dlogdet.spectrum(_source(300), n0=100, seed=0, client=c)
        assert sp.eigenvalues.shape == (1, 100)
        assert "dlogdet-dashboard" in c.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.plugins))
        with urllib.request.urlopen(dashboard.url(c), timeout=30) as resp:
            assert resp.status == 200 and "Bokeh.safely" in resp.read().decode()
        snap = dashboard.snapshot(c)
        assert snap["run"] is None and [m["limit_kind"] for m in snap["memory"]] == ["memory limit"]

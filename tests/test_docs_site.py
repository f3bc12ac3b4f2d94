"""The built documentation site, checked in a real browser: ``make docs`` runs this after the build.

Headless Chromium (Debian's ``chromium`` and ``chromium-driver``, driven by Selenium, as the dashboard's browser
test) opens the landing page, follows the navigation to the API page of ``dlogdet.logdet`` and to a rendered
notebook, then visits every page of the site reachable from the landing page and fails on a broken internal link
(a missing page or anchor), an image that did not load, or an empty page. Static checks of the built HTML beside
it: every public name has its API page with a summary and a signature, every command of the command line and every
configuration key appear, every notebook is rendered with outputs and without errors.

These tests are marked ``docs`` and run only when ``DLOGDET_DOCS_SITE`` names the built site (``make docs`` sets
it); then a missing browser or a missing page fails them, it does not skip them. Screenshots of the landing page,
the decision guide and a notebook go to ``<site>/../screenshots/``.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import tempfile
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

import pytest

pytestmark = pytest.mark.docs

SITE = os.environ.get("DLOGDET_DOCS_SITE")
if not SITE:
    pytest.skip("the built site is checked by `make docs` (DLOGDET_DOCS_SITE names it)", allow_module_level=True)
SITE_DIR = Path(SITE).resolve()
NOTEBOOKS = ("01-quickstart", "02-ntk-mnist1d", "03-extrapolation", "04-spectra", "05-clusters")


def page(rel: str) -> Path:
    p = SITE_DIR / rel
    assert p.is_file(), f"the built site has no {rel}"
    return p


def url(rel: str) -> str:
    return page(rel).as_uri()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
    driver = shutil.which("chromedriver")
    assert chromium and driver, "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    profile = tempfile.mkdtemp(dir=tmp_path_factory.mktemp("chromium"), prefix="profile-")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1000", f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    drv = webdriver.Chrome(service=Service(executable_path=driver), options=opts)
    drv.set_page_load_timeout(60)
    try:
        yield drv
    finally:
        drv.quit()


# ------------------------------------------------------------------------------------------------ in the browser

READ = """
const main = document.querySelector('main article') || document.querySelector('article') || document.body
             || document.documentElement;
const imgs = Array.from(document.images).map(i => ({src: i.currentSrc || i.src, ok: i.complete && i.naturalWidth > 0}));
const links = Array.from(document.querySelectorAll('a[href]')).map(a => a.href);
return {ready: document.readyState, text: main.innerText || main.textContent || '', imgs: imgs, links: links,
        title: document.title,
        h1: (document.querySelector('h1') || {}).innerText || ''};
"""


def read(drv, timeout: float = 20.0) -> dict:
    """The page's text, images and links, once it has loaded (its text is laid out and its images are done)."""
    import time

    end = time.monotonic() + timeout
    while True:
        try:
            got = drv.execute_script(READ)
        except Exception:       # the document is being replaced
            got = None
        if got is not None and got["ready"] == "complete" and got["text"].strip():
            return got
        if time.monotonic() > end:
            if got is None:
                raise AssertionError(f"{drv.current_url}: the page could not be read")
            return got
        time.sleep(0.1)


def local_target(href: str) -> tuple[Path, str] | None:
    """(file, fragment) of a link inside the site, or None for a link elsewhere (the web, mailto)."""
    target, frag = urldefrag(href)
    parsed = urlparse(target)
    if parsed.scheme != "file":
        return None
    path = Path(unquote(parsed.path))
    if SITE_DIR not in path.parents and path != SITE_DIR:
        return None
    return path, frag


def click_link(drv, text: str):
    from selenium.webdriver.common.by import By

    links = [a for a in drv.find_elements(By.PARTIAL_LINK_TEXT, text) if a.is_displayed()]
    assert links, f"{drv.current_url}: no visible link {text!r}"
    links[0].click()


def test_navigation_from_the_landing_page(browser):
    from selenium.webdriver.common.by import By

    browser.get(url("index.html"))
    landing = read(browser)
    assert "dlogdet" in landing["h1"] and len(landing["text"]) > 500
    shots = SITE_DIR.parent / "screenshots"
    shots.mkdir(exist_ok=True)
    browser.save_screenshot(str(shots / "landing.png"))

    # landing page -> API reference -> dlogdet -> dlogdet.logdet
    click_link(browser, "API reference")
    assert read(browser)["h1"].startswith("API reference")
    click_link(browser, "dlogdet.logdet")
    api = read(browser)
    assert api["h1"].startswith("dlogdet.logdet"), api["h1"]
    assert "log|det M|" in api["text"] and "Parameters" in api["text"] and "method" in api["text"]
    sig = browser.find_elements(By.CSS_SELECTOR, "dl.py.function > dt")
    assert sig and "logdet(" in sig[0].text and "budget" in sig[0].text

    # landing page -> Examples -> the first notebook, rendered with its outputs and figures
    browser.get(url("index.html"))
    click_link(browser, "Examples")
    click_link(browser, "quickstart")
    nb = read(browser)
    assert "quickstart" in nb["h1"].lower()
    outputs = browser.find_elements(By.CSS_SELECTOR, ".cell_output")
    assert len(outputs) >= 4, f"{browser.current_url}: {len(outputs)} cell outputs"
    assert "relative difference" in nb["text"]
    figures = [i for i in nb["imgs"] if "_images" in i["src"] or i["src"].startswith("data:")]
    assert figures and all(i["ok"] for i in figures), nb["imgs"]
    browser.execute_script("document.querySelectorAll('.cell_output img')[0].scrollIntoView({block: 'center'})")
    browser.save_screenshot(str(shots / "notebook.png"))

    browser.get(url("choosing-a-method.html"))
    guide = read(browser)
    assert any(i["src"].endswith("cost-accuracy.svg") and i["ok"] for i in guide["imgs"]), guide["imgs"]
    browser.save_screenshot(str(shots / "decision-guide.png"))
    browser.execute_script("document.querySelector('img.cost-accuracy').scrollIntoView({block: 'start'})")
    browser.save_screenshot(str(shots / "decision-guide-figure.png"))


@pytest.mark.timeout(1200)
def test_every_page_links_images_and_text(browser):
    """Every page reachable from the landing page: its internal links lead to a page and anchor that exist, its
    images load, and it has text."""
    ids_of: dict[Path, set[str]] = {}

    def ids(path: Path) -> set[str]:
        if path not in ids_of:
            ids_of[path] = set(re.findall(r'\bid="([^"]+)"', path.read_text(encoding="utf-8", errors="replace")))
        return ids_of[path]

    start = page("index.html")
    todo, seen, problems = collections.deque([start]), {start}, []
    while todo:
        p = todo.popleft()
        browser.get(p.as_uri())
        try:
            got = read(browser)
        except AssertionError as e:   # a page the script cannot read is a problem of that page
            problems.append(str(e))
            continue
        rel = p.relative_to(SITE_DIR).as_posix()
        if len(got["text"].strip()) < 80:
            problems.append(f"{rel}: an empty page ({len(got['text'].strip())} characters)")
        for img in got["imgs"]:
            if not img["ok"]:
                problems.append(f"{rel}: the image {img['src']} did not load")
        for href in got["links"]:
            target = local_target(href)
            if target is None:
                continue
            path, frag = target
            if path.is_dir():
                path = path / "index.html"
            if not path.is_file():
                problems.append(f"{rel}: a broken link to {path.relative_to(SITE_DIR)}")
                continue
            if frag and path.suffix == ".html" and frag not in ids(path):
                problems.append(f"{rel}: a link to a missing anchor {path.relative_to(SITE_DIR)}#{frag}")
            if path.suffix == ".html" and path not in seen and "_sources" not in path.parts:
                seen.add(path)
                todo.append(path)
    assert not problems, "\n".join(problems)
    visited = {q.relative_to(SITE_DIR).as_posix() for q in seen}
    for must in ("getting-started.html", "choosing-a-method.html", "guides/cli.html", "guides/configuration.html",
                 "guides/troubleshooting.html", "api/generated/dlogdet.logdet.html", "benchmarks/limits.html",
                 *(f"examples/{n}.html" for n in NOTEBOOKS)):
        assert must in visited, f"{must} is not reachable from the landing page"


# ------------------------------------------------------------------------------------------------ in the HTML

def text_of(rel: str) -> str:
    html = page(rel).read_text(encoding="utf-8")
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_every_public_name_has_an_api_page():
    import dlogdet
    import dlogdet.ntk

    for module in (dlogdet, dlogdet.ntk):
        for name in module.__all__:
            full = f"{module.__name__}.{name}"
            html = page(f"api/generated/{full}.html").read_text(encoding="utf-8")
            assert f'id="{full}"' in html, f"{full}: its page documents no object of that name"
            body = re.sub(r"<[^>]+>", " ", html.split(f'id="{full}"', 1)[1])
            words = re.sub(r"\s+", " ", body).strip()
            assert len(words) > 40, f"{full}: no summary on its page"
            obj = getattr(module, name)
            missing = [p for p in documented_parameters(obj) if not re.search(rf"\b{p}\b", parameter_sections(html))]
            assert not missing, f"{full}: its page's Parameters (or Attributes) section lacks {missing}"


def documented_parameters(obj) -> list[str]:
    """The parameters a public name's page must describe: those of a function's signature or of a class's
    constructor (its own ``__init__``, or a dataclass's fields); not ``self``, ``*args``, ``**kwargs``."""
    import dataclasses
    import inspect

    if inspect.isclass(obj) and not ("__init__" in vars(obj) or dataclasses.is_dataclass(obj)):
        return []
    if not callable(obj):
        return []
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in params if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def parameter_sections(html: str) -> str:
    """The text of the Parameters and Attributes sections of a built API page (numpydoc renders them as field
    lists: ``<dt class="field-odd">Parameters``, then the next field's ``<dt class="field-...">``)."""
    parts = re.split(r'<dt class="field-(?:odd|even)">', html)
    text = " ".join(p for p in parts[1:] if re.match(r"\s*(Parameters|Attributes)\b", p))
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text))


def test_the_parameter_check_reads_sections():
    html = ('<dt class="field-odd">Parameters<span>:</span></dt><dd><strong>sizes</strong> tuple</dd>'
            '<dt class="field-even">Returns<span>:</span></dt><dd><strong>seed</strong></dd>')
    assert re.search(r"\bsizes\b", parameter_sections(html))
    assert "seed" not in parameter_sections(html)          # a Returns section does not document a parameter

    def f(a, b=1, *args, c, **kw):
        pass
    assert documented_parameters(f) == ["a", "b", "c"]


def test_every_command_and_setting_appears():
    from dlogdet.cli import COMMANDS

    cli = text_of("guides/cli.html")
    for command in COMMANDS:
        assert f"dlogdet {command}" in cli, f"the command-line page lacks `dlogdet {command}`"
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs" / "_ext"))
    import dlogdet_docs

    _, entries = dlogdet_docs.config_entries(dlogdet_docs.yaml_path().read_text(encoding="utf-8"))
    config = text_of("guides/configuration.html")
    for e in entries:
        if e["leaf"]:
            assert e["path"] in config, f"the configuration page lacks {e['path']}"
    errors = text_of("guides/troubleshooting.html")
    for cls, _ in dlogdet_docs.error_classes():
        assert cls.__name__ in errors


def test_every_notebook_is_rendered_with_outputs():
    for name in NOTEBOOKS:
        html = page(f"examples/{name}.html").read_text(encoding="utf-8")
        assert html.count("cell_output") >= 2, f"{name}: rendered without outputs"
        assert "traceback" not in html.lower() or "ansi" not in html, f"{name}: a cell failed"

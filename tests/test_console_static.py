"""Static checks of the duty console (``gateway/console/``), and of how it is served.

The pages must work on a machine with no internet (no CDN, no web fonts), load only files that
exist and are packaged, run under the pages' Content-Security-Policy (no inline script), never
parse server text as HTML, have every label in both languages, and call only API routes that
exist. Browser tests of the behaviour are in ``tests/test_console_browser.py``.
"""

from __future__ import annotations

import glob
import re
import shutil
import subprocess
import tomllib
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from alerts.model import AlertClass, AlertState, Disposition, Severity
from alerts.notify.store import Status as NotificationStatus
from gateway.api.routes_console import CONTENT_SECURITY_POLICY
from gateway.app import create_app
from gateway.config import load_settings
from gateway.scope import Role

ROOT = Path(__file__).resolve().parents[1]
CONSOLE = ROOT / "gateway" / "console"
#: The console's own files; the vendored library is checked for presence, not for style.
OWN = sorted(
    p
    for p in CONSOLE.iterdir()
    if p.suffix in {".html", ".js", ".css"} and not p.name.startswith("portal")
)
PAGES = [p for p in OWN if p.suffix == ".html"]
SCRIPTS = [p for p in OWN if p.suffix == ".js"]
CONSOLE_PAGES = {
    "index.html",
    "login.html",
    "alert.html",
    "sites.html",
    "device.html",
    "stats.html",
}


class _Collect(HTMLParser):
    """Every element's attributes, and the text of each inline script."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.inline_scripts: list[tuple[str, str]] = []
        self._script: dict[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.elements.append((tag, a))
        if tag == "script":
            self._script = a

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._script = None

    def handle_data(self, data: str) -> None:
        if self._script is not None and data.strip():
            self.inline_scripts.append((self._script.get("type", "text/javascript"), data))


def parse(page: Path) -> _Collect:
    collected = _Collect()
    collected.feed(page.read_text(encoding="utf-8"))
    return collected


def i18n() -> dict[str, dict[str, str]]:
    """The label dictionary, read from i18n.js (a JS object literal of quoted strings)."""
    text = (CONSOLE / "i18n.js").read_text(encoding="utf-8")
    langs: dict[str, dict[str, str]] = {}
    for lang, body in re.findall(r"^  (zh|en): \{(.*?)^  \},", text, re.M | re.S):
        pairs = re.findall(r"(\w+): '((?:[^'\\]|\\.)*)'", body)
        langs[lang] = dict(pairs)
    return langs


def test_the_console_pages_exist() -> None:
    assert CONSOLE_PAGES <= {p.name for p in PAGES}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_each_page_loads_only_local_files_that_exist_and_are_packaged(page: Path) -> None:
    doc = parse(page)
    refs = [
        a.get("src") or a.get("href") or "" for tag, a in doc.elements if tag in ("script", "link")
    ]
    assert refs, f"{page.name} loads no script or style"
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["gateway"]
    packaged = {
        Path(f)
        for pattern in patterns
        for f in glob.glob(pattern, root_dir=ROOT / "gateway", recursive=True)
    }
    for ref in refs:
        # Absolute paths on this origin (the pages sit at the root, next to "/").
        assert ref.startswith("/") and not ref.startswith("//"), f"{page.name}: {ref}"
        target = CONSOLE / ref.lstrip("/")
        assert target.is_file(), f"{page.name} loads {ref}, which does not exist"
        assert Path("console") / ref.lstrip("/") in packaged, f"{ref} is not in the package"
    # Its own module is among them, and the stylesheet everyone shares.
    assert "/common.css" in refs


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_each_module_imports_only_files_that_exist(script: Path) -> None:
    for spec in re.findall(
        r"""^\s*(?:import|export)\b[^'"]*?from\s+'([^']+)'""", script.read_text(), re.M
    ):
        assert spec.startswith("./"), f"{script.name}: {spec} (relative imports only)"
        assert (script.parent / spec).resolve().is_file(), f"{script.name}: {spec} is missing"


def test_no_external_resources() -> None:
    # The gateway runs offline: nothing may be fetched from another origin.
    for f in OWN:
        text = f.read_text(encoding="utf-8")
        assert not re.search(r"https?://", text, re.I), f.name
        assert not re.search(r"""(src|href|action)\s*=\s*["']?//""", text, re.I), f.name
        for forbidden in ("@import", "@font-face", "<iframe", "url(http"):
            assert forbidden not in text.lower(), (f.name, forbidden)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_inline_script_code_so_the_csp_can_forbid_it(page: Path) -> None:
    doc = parse(page)
    assert all(kind == "application/json" for kind, _ in doc.inline_scripts), page.name
    for tag, attrs in doc.elements:
        assert not any(k.startswith("on") for k in attrs), f"{page.name}: inline handler on <{tag}>"
        assert not attrs.get("href", "").lower().startswith("javascript:")


@pytest.mark.parametrize(
    "page", [p for p in PAGES if p.name in CONSOLE_PAGES], ids=lambda p: p.name
)
def test_each_page_carries_the_csp_itself(page: Path) -> None:
    """``/`` is served by the app, not by the console route: the page states the same policy
    in a meta tag (without ``frame-ancestors``, which browsers ignore there)."""
    metas = [
        a["content"]
        for tag, a in parse(page).elements
        if tag == "meta" and a.get("http-equiv", "").lower() == "content-security-policy"
    ]
    header = {d.strip() for d in CONTENT_SECURITY_POLICY.split(";")}
    assert [{d.strip() for d in m.split(";")} for m in metas] == [
        {d for d in header if not d.startswith("frame-ancestors")}
    ]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_server_text_never_parsed_as_html(script: Path) -> None:
    js = script.read_text(encoding="utf-8")
    for sink in (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        "srcdoc",
        "createContextualFragment",
        "DOMParser",
    ):
        assert sink not in js, f"{script.name}: {sink}"


def test_labels_complete_in_both_languages() -> None:
    labels = i18n()
    assert set(labels) == {"zh", "en"}
    assert set(labels["zh"]) == set(labels["en"]), set(labels["zh"]) ^ set(labels["en"])
    assert all(v.strip() for lang in labels.values() for v in lang.values())
    used: set[str] = set()
    for page in PAGES:
        used |= {a["data-i18n"] for _, a in parse(page).elements if "data-i18n" in a}
    for script in SCRIPTS:
        js = script.read_text(encoding="utf-8")
        used |= set(re.findall(r"\bt\('([a-z0-9_]+)'\s*[,)]", js))
        used |= set(re.findall(r"'data-i18n': '([a-z0-9_]+)'\s*[,}]", js))
    used |= {f"sev_{s}" for s in Severity} | {f"state_{s}" for s in AlertState}
    used |= {f"disp_{d}" for d in Disposition} | {f"class_{c}" for c in AlertClass}
    used |= {f"nstat_{s}" for s in NotificationStatus}
    used |= {f"role_{r}" for r in Role} | {
        f"live_{s}" for s in ("connecting", "live", "reconnecting", "offline")
    }
    used |= {f"col_{c}" for c in re.findall(r"'([a-z]+)'", _columns())}
    assert not used - set(labels["zh"]), sorted(used - set(labels["zh"]))


def _columns() -> str:
    found = re.search(r"const COLUMNS = \[([^\]]*)\]", (CONSOLE / "board.js").read_text())
    assert found
    return found.group(1)


def test_close_form_offers_every_disposition() -> None:
    doc = parse(CONSOLE / "alert.html")
    form = [a for tag, a in doc.elements if tag == "select" and a.get("name") == "disposition"]
    assert len(form) == 1
    options: set[str] = set()
    inside = False
    for tag, a in doc.elements:
        if tag == "select":
            inside = a.get("name") == "disposition"
        elif tag == "option" and inside:
            options.add(a["value"])
    assert options == {""} | {d.value for d in Disposition}


def _api_paths_in_scripts() -> set[str]:
    """Every literal API path the scripts call, with ``${...}`` as ``{}``, query cut off."""
    paths: set[str] = set()
    for script in SCRIPTS:
        for literal in re.findall(r"""['`](/api/[^'`?]*)""", script.read_text(encoding="utf-8")):
            paths.add(re.sub(r"\$\{[^}]*\}", "{}", literal))
    return paths


def test_scripts_call_only_routes_that_exist(tmp_path: Path) -> None:
    app = create_app(load_settings(data_dir=tmp_path))
    routes = {re.sub(r"\{[^}]*\}", "{}", p) for p in app.openapi()["paths"]}
    called = _api_paths_in_scripts()
    assert {"/api/auth/login", "/api/alerts/stream", "/api/console/sites"} <= called
    assert not called - routes, sorted(called - routes)


@pytest.fixture
async def client(tmp_path: Path) -> httpx.AsyncClient:
    app = create_app(load_settings(data_dir=tmp_path))  # the static route needs no gateway
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ewg")


async def test_pages_are_served_with_a_csp_and_nothing_else_is(client: httpx.AsyncClient) -> None:
    async with client:
        for name, kind in (
            ("/", "text/html"),  # the board at the root gets the same headers as its pages
            ("/login.html", "text/html"),
            ("/common.js", "text/javascript"),
            ("/common.css", "text/css"),
            ("/vendor/uplot/uPlot.esm.js", "text/javascript"),
        ):
            r = await client.get(name)
            assert r.status_code == 200, name
            assert r.headers["content-type"].startswith(kind), name
            assert "script-src 'self'" in r.headers["content-security-policy"]
            assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
            assert r.headers["x-content-type-options"] == "nosniff"
        # Only files of the console directory, and only pages, scripts and styles.
        for name in (
            "/vendor/README.md",
            "/vendor/uplot/LICENSE",
            "/nothing.html",
            "/vendor/..%2F..%2Fapp.py",
            "/vendor/../../pyproject.toml",
            "/..%2Fapp.py",
        ):
            r = await client.get(name)
            assert r.status_code == 404, name


def test_vendored_chart_library_is_documented() -> None:
    readme = (CONSOLE / "vendor" / "README.md").read_text(encoding="utf-8")
    version = re.search(
        r"\(v(\d+\.\d+\.\d+)\)", (CONSOLE / "vendor/uplot/uPlot.esm.js").read_text()
    )
    assert version and f"| {version.group(1)} |" in readme
    assert (CONSOLE / "vendor" / "uplot" / "LICENSE").read_text().startswith("The MIT License")


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_parses(script: Path) -> None:
    result = subprocess.run(
        ["node", "--experimental-default-type=module", "--check", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr

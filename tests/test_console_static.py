"""Static checks of the duty console (gateway/console/index.html).

The page must work on a machine with no internet (no CDN, no web fonts), must never parse server
text as HTML, and must have a label for every severity, state and disposition the alert model
knows, in both languages. A browser test of the behaviour lives elsewhere.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from alerts.model import AlertState, Disposition, Severity

CONSOLE = Path(__file__).resolve().parents[1] / "gateway" / "console" / "index.html"
HTML = CONSOLE.read_text(encoding="utf-8")


class _Collect(HTMLParser):
    """Collects every element's attributes, and the page's scripts by type."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.scripts: dict[str, str] = {}
        self._script_type: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.elements.append((tag, a))
        if tag == "script":
            self._script_type = a.get("type", "text/javascript")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._script_type = None

    def handle_data(self, data: str) -> None:
        if self._script_type is not None:
            self.scripts[self._script_type] = self.scripts.get(self._script_type, "") + data


PAGE = _Collect()
PAGE.feed(HTML)
JS = PAGE.scripts["text/javascript"]
I18N: dict[str, dict[str, str]] = json.loads(PAGE.scripts["application/json"])


def test_no_external_resources() -> None:
    # The gateway runs offline: nothing may be fetched from another origin.
    assert not re.search(r"https?://", HTML, re.I)
    assert not re.search(r"""(src|href|action)\s*=\s*["']?//""", HTML, re.I)
    for forbidden in ("<link", "@import", "url(", "@font-face", "<iframe", "<img"):
        assert forbidden not in HTML.lower(), forbidden
    assert all(not (tag == "script" and "src" in attrs) for tag, attrs in PAGE.elements)


def test_server_text_never_parsed_as_html() -> None:
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
        assert sink not in JS, sink
    assert "textContent" in JS


def test_labels_complete_in_both_languages() -> None:
    assert set(I18N) == {"zh", "en"}
    assert set(I18N["zh"]) == set(I18N["en"])
    assert all(isinstance(v, str) and v.strip() for lang in I18N.values() for v in lang.values())
    used = {a["data-i18n"] for _, a in PAGE.elements if "data-i18n" in a}
    used |= set(re.findall(r"\bt\('([a-z_]+)'\s*[,)]", JS))
    used |= {"live_" + s for s in re.findall(r"setLive\('([a-z]+)'\)", JS)}
    columns = re.search(r"const COLUMNS = \[([^\]]*)\]", JS)
    assert columns
    used |= {"col_" + c for c in re.findall(r"'([a-z]+)'", columns.group(1))}
    used |= {f"sev_{s}" for s in Severity} | {f"state_{s}" for s in AlertState}
    used |= {f"disp_{d}" for d in Disposition}
    assert not used - set(I18N["zh"]), sorted(used - set(I18N["zh"]))


def test_close_form_offers_every_disposition() -> None:
    selects = [a for tag, a in PAGE.elements if tag == "select"]
    assert [s.get("name") for s in selects] == ["disposition"]
    options = {a["value"] for tag, a in PAGE.elements if tag == "option"}
    assert options == {""} | {d.value for d in Disposition}
    assert any(tag == "textarea" and a.get("name") == "note" for tag, a in PAGE.elements)
    assert any(
        tag == "button" and "confirm-close" in a.get("class", "").split()
        for tag, a in PAGE.elements
    )


def test_api_contract_strings() -> None:
    # The routes and auth the lead's FastAPI app implements; a rename must change both sides.
    for needle in (
        "'/api/alerts?state=open'",
        "/api/alerts/${id}/ack",
        "/api/alerts/${id}/close",
        "'/api/health'",
        "'/api/alerts/stream?access_token='",
        "'Bearer '",
        "history.replaceState",
        "sessionStorage",
        "data-alert-id",
        "class: 'ack'",
        "class: 'close'",
    ):
        assert needle in JS, needle


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
def test_script_parses(tmp_path: Path) -> None:
    script = tmp_path / "console.js"
    script.write_text(JS, encoding="utf-8")
    result = subprocess.run(
        ["node", "--check", str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr

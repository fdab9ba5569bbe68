"""No template carries what the Content-Security-Policy refuses (docs/operations.md,
"Security headers"): inline scripts, <style> elements, style attributes, inline event
handlers, javascript: links. The browser test (tests/e2e/test_csp.py) sees the pages it
visits; this sees every template, partials included."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
REFUSED = {
    "an inline script": re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I),
    "a <style> element": re.compile(r"<style\b", re.I),
    "a style attribute": re.compile(r"\sstyle\s*=", re.I),
    "an inline event handler": re.compile(r"\son[a-z]+\s*=", re.I),
    "a javascript: URL": re.compile(r"javascript:", re.I),
}


# E-mail bodies are read by mail clients, never served as a page: they style themselves
# inline (mail clients drop stylesheets), and carry no script or handler either.
EMAIL = "email"
PAGES = sorted(p for p in TEMPLATES.rglob("*.html") if EMAIL not in p.relative_to(TEMPLATES).parts)
EMAILS = sorted(p for p in TEMPLATES.rglob("*.html") if EMAIL in p.relative_to(TEMPLATES).parts)


@pytest.mark.parametrize("template", PAGES, ids=lambda p: str(p.relative_to(TEMPLATES)))
def test_no_template_has_inline_script_or_style(template: Path) -> None:
    text = template.read_text()
    found = [f"{what}: {m.group(0)!r}" for what, pattern in REFUSED.items() for m in pattern.finditer(text)]
    assert not found, found


def test_the_e_mail_templates_are_told_apart_from_the_pages() -> None:
    assert [p.name for p in EMAILS] == ["approval.html", "notification.html"] and len(PAGES) > 30


@pytest.mark.parametrize("template", EMAILS, ids=lambda p: str(p.relative_to(TEMPLATES)))
def test_no_e_mail_template_has_script_or_handlers(template: Path) -> None:
    text = template.read_text()
    allowed = {"a style attribute", "a <style> element"}
    found = [
        f"{what}: {m.group(0)!r}"
        for what, pattern in REFUSED.items()
        if what not in allowed
        for m in pattern.finditer(text)
    ]
    assert not found, found

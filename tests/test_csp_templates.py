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


@pytest.mark.parametrize("template", sorted(TEMPLATES.rglob("*.html")), ids=lambda p: str(p.relative_to(TEMPLATES)))
def test_no_template_has_inline_script_or_style(template: Path) -> None:
    text = template.read_text()
    found = [f"{what}: {m.group(0)!r}" for what, pattern in REFUSED.items() for m in pattern.finditer(text)]
    assert not found, found

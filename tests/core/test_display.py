"""The display helpers both template engines share, and the Jinja2 fragments' engine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.http import QueryDict
from django.template import Context, Template
from jinja2 import UndefinedError

from core import jinja
from core.display import ago, fresh_ago, num, with_params

T0 = datetime(2026, 11, 30, 6, 0, 0, 250_000, tzinfo=UTC)


def test_ago_says_how_long_ago_with_the_utc_time_on_hover():
    with time_machine.travel(T0 + timedelta(seconds=4), tick=False):
        assert ago(T0) == (
            '<time datetime="2026-11-30T06:00:00.250000+00:00" title="2026-11-30 06:00:00 UTC" data-ago>4 s ago</time>'
        )
        assert ago(T0 + timedelta(minutes=10)).endswith(">in 9 min</time>")
    assert ago(None) == "never"


def test_fresh_ago_tells_every_ago_again_from_now_and_leaves_other_times_alone():
    with time_machine.travel(T0 + timedelta(seconds=4), tick=False):
        other = '<time datetime="2026-11-30T07:00:00+00:00">07:00 UTC</time>'
        cached = f"<td>{ago(T0)}</td><td>{ago(T0 - timedelta(hours=2))}</td><td>{other}</td>"
    assert ">4 s ago<" in cached and ">2 h ago<" in cached
    with time_machine.travel(T0 + timedelta(minutes=65), tick=False):
        again = fresh_ago(cached)
    assert ">1 h ago<" in again and ">3 h ago<" in again and ">4 s ago<" not in again
    assert other in again
    assert again.count('title="2026-11-30 06:00:00 UTC"') == 1  # the rest of each element is kept


def test_with_params_changes_one_parameter_and_keeps_the_others():
    params = QueryDict("labels=team%3Dsearch&page=3&sort=name")
    assert with_params(params, sort="-cpu", page=None) == "?labels=team%3Dsearch&sort=-cpu"
    assert with_params(QueryDict(""), page="") == "?"
    assert num(1234.56) == "1,234.6" and num(3) == "3" and num(None) == "—"


def test_fragments_escape_what_they_print_and_refuse_an_unknown_name():
    html = jinja.render("dashboard/_agent_table_head.html", {"sort": "-cpu", "params": QueryDict("q=<b>&sort=-cpu")})
    assert 'aria-sort="descending"' in html and "CPU % ▼" in html
    assert "<b>" not in html and "q=%3Cb%3E" in html  # a query string is encoded, never raw markup
    with pytest.raises(UndefinedError):
        jinja.render("dashboard/_agent_table_head.html", {"sort": "name"})  # no params: a loud error


def test_the_fragment_tag_renders_a_jinja_fragment_inside_a_django_template():
    template = Template(
        '{% load console %}<table>{% fragment "dashboard/_agent_table_head.html" sort=s params=p %}</table>'
    )
    html = template.render(Context({"s": "name", "p": QueryDict("")}))
    assert '<th aria-sort="ascending"><a href="?sort=-name">Name ▲</a></th>' in html
    assert "&lt;th" not in html  # inserted as markup, not escaped twice


def test_links_and_assets_are_djangos_own_remembered():
    from django.templatetags.static import static
    from django.urls import reverse

    from core.display import _reversed, asset, url

    assert url("dashboard:agents", "acme") == reverse("dashboard:agents", args=["acme"]) == "/t/acme/agents/"
    before = _reversed.cache_info().hits
    assert url("dashboard:agents", "acme") == "/t/acme/agents/"
    assert _reversed.cache_info().hits == before + 1
    assert asset("css/console.css") == static("css/console.css")
    html = Template('{% load console %}{% link "dashboard:home" s %} {% asset "js/live.js" %}').render(
        Context({"s": "a-b"})
    )
    assert (
        html == f"{reverse('dashboard:home', args=['a-b'])} {static('js/live.js')}" == f"/t/a-b/ {static('js/live.js')}"
    )

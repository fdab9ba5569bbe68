"""The request's display helpers (``approvals.display``) for the templates:
``{{ r.details|details_shown }}``, ``{{ r|who_decides }}``, ``{% if r|may_decide:current %}``,
``{{ r|vote_of:user }}``."""

from __future__ import annotations

from django import template

from approvals import display

register = template.Library()

register.filter("details_shown", display.details_shown)
register.filter("who_decides", display.who_decides)
register.filter("may_decide", display.may_decide)
register.filter("vote_of", display.vote_of)

from __future__ import annotations

import re

from core.errors import CATALOG, ErrorCode, InterfaceError

RANGES = {
    "E100": "auth",
    "E101": "dashboard",
    "E102": "websocket",
    "E103": "control",
    "E104": "events",
    "E105": "audit",
    "E106": "cost",
    "E107": "alerts",
    "E108": "ingest",
    "E109": "server",
}


def test_every_code_is_in_the_catalog_with_a_status_and_a_suggestion():
    assert set(CATALOG) == set(ErrorCode)
    for code, spec in CATALOG.items():
        assert re.fullmatch(r"E10\d{3}", code.value)
        assert code.value[:4] in RANGES
        assert 400 <= spec.http_status <= 599
        assert spec.message and spec.suggestion


def test_codes_are_unique():
    # A second name for a code would be an alias, absent from iteration but not from
    # __members__ (ErrorCode is also @unique, so such a module fails to import).
    assert len(ErrorCode.__members__) == len(ErrorCode)
    assert len({c.value for c in ErrorCode}) == len(ErrorCode)


def test_control_refusals_have_control_codes():
    control = [c for c in ErrorCode if c.name.startswith("CONTROL_")]
    assert control and all(c.value.startswith("E103") for c in control)


def test_the_error_example_runs_against_the_python_api():
    from l10console.services import ErrorCode as FacadeCode
    from l10console.services import InterfaceError as FacadeError

    assert FacadeCode is ErrorCode and FacadeError is InterfaceError
    try:
        raise InterfaceError(ErrorCode.CONTROL_LOCKED)
    except InterfaceError as e:
        assert e.code == "E10302"
        assert e.message
        assert e.http_status == 409
        assert e.is_recoverable is True
        assert e.recovery_suggestion


def test_the_api_shape_of_an_error():
    body = InterfaceError(ErrorCode.AGENT_NOT_FOUND, "No agent x.").as_dict()
    assert body == {
        "error": {
            "code": "E10101",
            "message": "No agent x.",
            "recoverable": False,
            "suggestion": CATALOG[ErrorCode.AGENT_NOT_FOUND].suggestion,
        }
    }

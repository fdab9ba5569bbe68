"""The one catalog of E10xxx error codes.

Ranges: E100xx auth, E101xx dashboard, E102xx websocket, E103xx control, E104xx events,
E105xx audit, E106xx cost, E107xx alerts, E108xx agent ingest, E109xx server; approvals,
a control of people over agents, are E1035x–E1036x.
Each code has an HTTP status, whether retrying can succeed, and a suggestion for the
person or program that got it. The JSON API answers
``{"error": {"code", "message", "recoverable", "suggestion"}}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum, unique
from typing import Any


@unique
class ErrorCode(StrEnum):
    # E100xx authentication and authorization
    AUTH_REQUIRED = "E10001"
    TOKEN_INVALID = "E10002"
    TOKEN_REVOKED = "E10003"
    PERMISSION_DENIED = "E10004"
    TENANT_NOT_FOUND = "E10005"
    LOGIN_THROTTLED = "E10006"
    TOKEN_EXPIRED = "E10007"
    TOKEN_SCOPE_MISSING = "E10008"
    LOGIN_FAILED = "E10009"
    TOKEN_REQUEST_INVALID = "E10010"
    MEMBER_INVALID = "E10011"
    LAST_ADMIN = "E10012"
    # E101xx dashboard
    AGENT_NOT_FOUND = "E10101"
    DASHBOARD_UNAVAILABLE = "E10102"
    DASHBOARD_INVALID_QUERY = "E10103"
    # E102xx websocket
    WS_UNAUTHORIZED = "E10201"
    WS_TENANT_FORBIDDEN = "E10202"
    WS_BAD_FRAME = "E10203"
    WS_TOO_MANY_CONNECTIONS = "E10204"
    WS_ACCESS_ENDED = "E10205"
    # E103xx control
    CONTROL_INVALID_TRANSITION = "E10301"
    CONTROL_LOCKED = "E10302"
    CONTROL_INVALID_QUOTA = "E10303"
    CONTROL_IDEMPOTENCY_MISMATCH = "E10304"
    CONTROL_IN_FLIGHT = "E10305"
    CONTROL_UNAVAILABLE = "E10306"
    CONTROL_REASON_REQUIRED = "E10307"
    CONTROL_BAD_KEY = "E10308"
    CONTROL_STALE = "E10309"
    CONTROL_INVALID_REQUEST = "E10310"
    CONTROL_INVALID_PAUSE = "E10311"
    CONTROL_INVALID_SELECTION = "E10312"
    CONTROL_INVALID_ACTION = "E10313"
    # E104xx events
    EVENT_INVALID_QUERY = "E10401"
    EVENT_BAD_TIME = "E10402"
    EVENT_BAD_RANGE = "E10403"
    EVENT_LIMIT_TOO_LARGE = "E10404"
    EVENT_OFFSET_PAST_END = "E10405"
    EVENT_BAD_CURSOR = "E10406"
    EVENT_UNKNOWN_TYPE = "E10407"
    # E105xx audit
    AUDIT_INVALID_QUERY = "E10501"
    AUDIT_BAD_TIME = "E10502"
    AUDIT_BAD_RANGE = "E10503"
    AUDIT_LIMIT_TOO_LARGE = "E10504"
    AUDIT_OFFSET_PAST_END = "E10505"
    AUDIT_BAD_CURSOR = "E10506"
    AUDIT_INVALID_ENTRY = "E10507"
    # E106xx cost
    COST_INVALID_QUERY = "E10601"
    COST_NEGATIVE = "E10602"
    COST_TOO_PRECISE = "E10603"
    COST_PRICE_OVERLAP = "E10604"
    COST_UNKNOWN_CURRENCY = "E10605"
    COST_BAD_RANGE = "E10606"
    COST_RANGE_TOO_LONG = "E10607"
    COST_UNKNOWN_SELECTOR = "E10608"
    COST_PRICE_NOT_FOUND = "E10609"
    COST_BUDGET_NOT_FOUND = "E10610"
    # E107xx alerts
    ALERT_NOT_FOUND = "E10701"
    ALERT_UNKNOWN_METRIC = "E10702"
    ALERT_BAD_WINDOW = "E10703"
    ALERT_FOR_TOO_LONG = "E10704"
    ALERT_BAD_THRESHOLD = "E10705"
    ALERT_BAD_SCOPE = "E10706"
    ALERT_BAD_TARGET = "E10707"
    ALERT_RULE_INVALID = "E10708"
    ALERT_NOT_OPEN = "E10709"
    ALERT_BAD_SNOOZE = "E10710"
    ALERT_LINK_INVALID = "E10711"
    ALERT_BAD_SILENCE = "E10712"
    # E108xx agent ingest
    INGEST_MALFORMED_JSON = "E10801"
    INGEST_INVALID = "E10802"
    INGEST_BODY_TOO_LARGE = "E10803"
    INGEST_BATCH_TOO_LARGE = "E10804"
    INGEST_TIME_IN_FUTURE = "E10805"
    INGEST_RATE_LIMITED = "E10806"
    INGEST_UNKNOWN_AGENT = "E10807"
    INGEST_UNSUPPORTED_MEDIA = "E10808"
    INGEST_TIME_TOO_OLD = "E10809"
    # E1035x–E1036x approvals (control's range)
    APPROVAL_INVALID = "E10350"
    APPROVAL_DETAILS_TOO_LARGE = "E10351"
    APPROVAL_BAD_TIMEOUT = "E10352"
    APPROVAL_BAD_ON_TIMEOUT = "E10353"
    APPROVAL_NOT_FOUND = "E10354"
    APPROVAL_DECIDED = "E10355"
    APPROVAL_EXPIRED = "E10356"
    APPROVAL_SAME_APPROVER = "E10357"
    APPROVAL_COMMENT_REQUIRED = "E10358"
    APPROVAL_ROLE_REQUIRED = "E10359"
    APPROVAL_RULE_NOT_FOUND = "E10360"
    # E109xx server
    INTERNAL = "E10901"
    SERVICE_UNAVAILABLE = "E10902"
    NOT_FOUND = "E10903"
    METHOD_NOT_ALLOWED = "E10904"
    INVALID_INPUT = "E10905"


@dataclass(frozen=True)
class ErrorSpec:
    http_status: int
    recoverable: bool
    message: str
    suggestion: str


CATALOG: dict[ErrorCode, ErrorSpec] = {
    ErrorCode.AUTH_REQUIRED: ErrorSpec(
        401, False, "Authentication is required.", "Send 'Authorization: Bearer <token>' or log in."
    ),
    ErrorCode.TOKEN_INVALID: ErrorSpec(
        401, False, "The API token is not valid.", "Check the token; a tenant admin can create a new one."
    ),
    ErrorCode.TOKEN_REVOKED: ErrorSpec(
        401, False, "The API token has been revoked.", "Ask a tenant admin for a new token."
    ),
    ErrorCode.PERMISSION_DENIED: ErrorSpec(
        403, False, "Your role does not allow this.", "Ask a tenant admin for a higher role."
    ),
    ErrorCode.TENANT_NOT_FOUND: ErrorSpec(
        404, False, "No such tenant.", "Check the tenant id; you can only use tenants you belong to."
    ),
    ErrorCode.LOGIN_THROTTLED: ErrorSpec(
        429, True, "Too many failed logins.", "Wait before trying again, or ask an admin to reset your password."
    ),
    ErrorCode.TOKEN_EXPIRED: ErrorSpec(
        401, False, "The API token has expired.", "Create a new token (a tenant admin, or you for a personal token)."
    ),
    ErrorCode.TOKEN_SCOPE_MISSING: ErrorSpec(
        403,
        False,
        "The API token's scopes do not allow this.",
        "Use a token with the scope this endpoint needs (docs/api.md, 'Token scopes and expiry').",
    ),
    ErrorCode.LOGIN_FAILED: ErrorSpec(
        400, False, "The username or password is not right.", "Check both; after a few failures sign-in waits."
    ),
    ErrorCode.TOKEN_REQUEST_INVALID: ErrorSpec(
        400, False, "The token could not be made as asked.", "Give a name, the scopes it needs and an expiry in days."
    ),
    ErrorCode.MEMBER_INVALID: ErrorSpec(
        400,
        False,
        "The member change could not be made as asked.",
        "Name a person who has an account, and a role: viewer, operator or admin.",
    ),
    ErrorCode.LAST_ADMIN: ErrorSpec(
        409, False, "A tenant keeps at least one admin.", "Make another member an admin first."
    ),
    ErrorCode.AGENT_NOT_FOUND: ErrorSpec(
        404, False, "No such agent.", "Check the agent id; agents of other tenants are not visible."
    ),
    ErrorCode.DASHBOARD_UNAVAILABLE: ErrorSpec(
        503, True, "Dashboard data is temporarily unavailable.", "Retry in a few seconds."
    ),
    ErrorCode.DASHBOARD_INVALID_QUERY: ErrorSpec(
        400, False, "The filter is not valid.", "Check the filter; labels are written team=search,env!=dev."
    ),
    ErrorCode.WS_UNAUTHORIZED: ErrorSpec(
        401, False, "The socket is not authenticated.", "Log in, or connect with an API token."
    ),
    ErrorCode.WS_TENANT_FORBIDDEN: ErrorSpec(
        403, False, "You do not belong to that tenant.", "Connect with a tenant_id you are a member of."
    ),
    ErrorCode.WS_BAD_FRAME: ErrorSpec(
        400, True, "The frame could not be understood.", "Send JSON frames of a documented type."
    ),
    ErrorCode.WS_TOO_MANY_CONNECTIONS: ErrorSpec(
        503, True, "The server has too many open sockets.", "Reconnect later with back-off."
    ),
    ErrorCode.WS_ACCESS_ENDED: ErrorSpec(
        401,
        False,
        "The socket's access has ended: its token was revoked or expired, or its session signed out.",
        "Sign in again, or connect with a valid API token.",
    ),
    ErrorCode.CONTROL_INVALID_TRANSITION: ErrorSpec(
        409, False, "The agent cannot make that change from its current state.", "Check the agent's state."
    ),
    ErrorCode.CONTROL_LOCKED: ErrorSpec(
        409, True, "Another control operation on this agent is in progress.", "Retry in a moment."
    ),
    ErrorCode.CONTROL_INVALID_QUOTA: ErrorSpec(
        422,
        False,
        "The quota is not valid.",
        "Use api_calls, tokens or cost_usd (in cents) with a non-negative whole limit.",
    ),
    ErrorCode.CONTROL_IDEMPOTENCY_MISMATCH: ErrorSpec(
        422, False, "The idempotency key was used for a different request.", "Use a new key for a new request."
    ),
    ErrorCode.CONTROL_IN_FLIGHT: ErrorSpec(
        409, True, "A request with this idempotency key is still running.", "Retry after it finishes."
    ),
    ErrorCode.CONTROL_UNAVAILABLE: ErrorSpec(
        503, True, "Control operations are temporarily unavailable.", "Retry shortly; nothing was changed."
    ),
    ErrorCode.CONTROL_REASON_REQUIRED: ErrorSpec(
        422, False, "This operation needs a reason.", "Say why, in a few words; it goes into the audit trail."
    ),
    ErrorCode.CONTROL_BAD_KEY: ErrorSpec(
        400, False, "The idempotency key is not valid.", "Use 1 to 255 letters, digits, '.', '_', ':' or '-'."
    ),
    ErrorCode.CONTROL_STALE: ErrorSpec(
        409, True, "The agent changed while this operation waited; nothing was written.", "Check its state and retry."
    ),
    ErrorCode.CONTROL_INVALID_REQUEST: ErrorSpec(
        422, False, "The control request is not valid.", "Check the fields against /api/v1/docs; nothing was changed."
    ),
    ErrorCode.CONTROL_INVALID_PAUSE: ErrorSpec(
        422,
        False,
        "The pause is not valid.",
        "Give minutes (1 to 10,080) or an aware until at most 7 days ahead, and mode after_task or now.",
    ),
    ErrorCode.CONTROL_INVALID_SELECTION: ErrorSpec(
        422, False, "The selection of agents is not valid.", "Select agents by id, or give a label selector."
    ),
    ErrorCode.CONTROL_INVALID_ACTION: ErrorSpec(
        422,
        False,
        "No such control action.",
        "Use pause, resume, stop, restart or quota (a batch: pause, resume or stop).",
    ),
    ErrorCode.EVENT_INVALID_QUERY: ErrorSpec(400, False, "The event query is not valid.", "Check the filters."),
    ErrorCode.EVENT_BAD_TIME: ErrorSpec(
        400, False, "A time of the event query cannot be read.", "Give times as 2026-12-01T14:00:00Z (ISO 8601)."
    ),
    ErrorCode.EVENT_BAD_RANGE: ErrorSpec(400, False, "The end of the time range is before its start.", "Swap them."),
    ErrorCode.EVENT_LIMIT_TOO_LARGE: ErrorSpec(
        400, False, "The page asked for is too large.", "Ask for at most 1,000 events; page with the cursor."
    ),
    ErrorCode.EVENT_OFFSET_PAST_END: ErrorSpec(
        400, False, "The offset is past the last event.", "Start from offset 0, or follow the cursor."
    ),
    ErrorCode.EVENT_BAD_CURSOR: ErrorSpec(
        400, False, "The cursor is not valid here.", "Use the cursor of the previous page of the same query."
    ),
    ErrorCode.EVENT_UNKNOWN_TYPE: ErrorSpec(
        400, False, "No event has that type.", "Leave the type out, or use one the events page lists."
    ),
    ErrorCode.AUDIT_INVALID_QUERY: ErrorSpec(400, False, "The audit query is not valid.", "Check the filters."),
    ErrorCode.AUDIT_BAD_TIME: ErrorSpec(
        400, False, "A time of the audit query cannot be read.", "Give times as 2026-12-01T14:00:00Z (ISO 8601)."
    ),
    ErrorCode.AUDIT_BAD_RANGE: ErrorSpec(400, False, "The end of the time range is before its start.", "Swap them."),
    ErrorCode.AUDIT_LIMIT_TOO_LARGE: ErrorSpec(
        400, False, "The page asked for is too large.", "Ask for at most 1,000 entries; page with the cursor."
    ),
    ErrorCode.AUDIT_OFFSET_PAST_END: ErrorSpec(
        400, False, "The offset is past the last entry.", "Start from offset 0, or follow the cursor."
    ),
    ErrorCode.AUDIT_BAD_CURSOR: ErrorSpec(
        400, False, "The cursor is not valid here.", "Use the cursor of the previous page of the same query."
    ),
    ErrorCode.AUDIT_INVALID_ENTRY: ErrorSpec(
        422, False, "The audit entry cannot be written as given.", "Check the field the message names."
    ),
    ErrorCode.COST_INVALID_QUERY: ErrorSpec(400, False, "The cost query is not valid.", "Check the date range."),
    ErrorCode.COST_NEGATIVE: ErrorSpec(
        422, False, "A price or budget cannot be negative.", "Give zero or more, in US dollars."
    ),
    ErrorCode.COST_TOO_PRECISE: ErrorSpec(
        422,
        False,
        "The amount has more digits than the console keeps.",
        "Give at most 6 decimal places for a price (8 whole digits), 2 for a budget.",
    ),
    ErrorCode.COST_PRICE_OVERLAP: ErrorSpec(
        409,
        False,
        "A price of this model already starts at that time.",
        "Choose another effective-from time, or correct that price instead.",
    ),
    ErrorCode.COST_UNKNOWN_CURRENCY: ErrorSpec(422, False, "The console keeps prices in USD only.", "Give USD."),
    ErrorCode.COST_BAD_RANGE: ErrorSpec(400, False, "The range ends before it starts.", "Swap the start and the end."),
    ErrorCode.COST_RANGE_TOO_LONG: ErrorSpec(
        400, False, "The range is longer than the console sums at once.", "Ask for at most 400 days."
    ),
    ErrorCode.COST_UNKNOWN_SELECTOR: ErrorSpec(
        422, False, "The budget's selector names no agent label this tenant has.", "Check the label key and value."
    ),
    ErrorCode.COST_PRICE_NOT_FOUND: ErrorSpec(404, False, "No such price.", "Check the price's id."),
    ErrorCode.COST_BUDGET_NOT_FOUND: ErrorSpec(
        404, False, "No such budget.", "Check the budget's id; budgets of other tenants are not visible."
    ),
    ErrorCode.APPROVAL_INVALID: ErrorSpec(
        400, False, "The approval request is not valid.", "Give an action and a summary of plain text."
    ),
    ErrorCode.APPROVAL_DETAILS_TOO_LARGE: ErrorSpec(
        413, False, "The request's details are too large.", "Send at most L10_APPROVAL_MAX_DETAILS_BYTES of JSON."
    ),
    ErrorCode.APPROVAL_BAD_TIMEOUT: ErrorSpec(
        422, False, "The timeout is out of range.", "Give from 10 seconds to 7 days."
    ),
    ErrorCode.APPROVAL_BAD_ON_TIMEOUT: ErrorSpec(422, False, "Unknown on_timeout.", "Use reject or approve."),
    ErrorCode.APPROVAL_NOT_FOUND: ErrorSpec(
        404, False, "No such approval request.", "Check its id; other tenants' requests are not visible."
    ),
    ErrorCode.APPROVAL_DECIDED: ErrorSpec(
        409, False, "The request is already decided.", "Read the request again: the message says who decided."
    ),
    ErrorCode.APPROVAL_EXPIRED: ErrorSpec(
        409, False, "The request has expired.", "The agent was told; it may ask again."
    ),
    ErrorCode.APPROVAL_SAME_APPROVER: ErrorSpec(
        409, False, "You have already approved this request.", "A second approver must be another person."
    ),
    ErrorCode.APPROVAL_COMMENT_REQUIRED: ErrorSpec(
        422, False, "A rejection needs a comment.", "Say why, so the agent's owner can act on it."
    ),
    ErrorCode.APPROVAL_ROLE_REQUIRED: ErrorSpec(
        403, False, "This request needs an admin to decide.", "Ask an admin of the tenant."
    ),
    ErrorCode.APPROVAL_RULE_NOT_FOUND: ErrorSpec(404, False, "No such approval rule.", "Check the rule's id."),
    ErrorCode.ALERT_NOT_FOUND: ErrorSpec(404, False, "No such alert.", "Check the alert id."),
    ErrorCode.ALERT_UNKNOWN_METRIC: ErrorSpec(
        422, False, "No such metric for an alert rule.", "Choose one of the metrics the rule form lists."
    ),
    ErrorCode.ALERT_BAD_WINDOW: ErrorSpec(
        422, False, "The rule's window is not a usable duration.", "Give a whole number of seconds, at least 60."
    ),
    ErrorCode.ALERT_FOR_TOO_LONG: ErrorSpec(
        422, False, "The rule's duration is longer than the metrics are kept.", "Shorten the window or the 'for'."
    ),
    ErrorCode.ALERT_BAD_THRESHOLD: ErrorSpec(422, False, "The threshold is not a number.", "Give a finite number."),
    ErrorCode.ALERT_BAD_SCOPE: ErrorSpec(
        422, False, "The rule's scope does not name agents.", "Leave it empty for all agents, or fix the selector."
    ),
    ErrorCode.ALERT_BAD_TARGET: ErrorSpec(
        422, False, "The notification target is not valid.", "A webhook needs an http(s) URL; e-mail, addresses."
    ),
    ErrorCode.ALERT_RULE_INVALID: ErrorSpec(422, False, "The alert rule is not valid.", "Correct the named field."),
    ErrorCode.ALERT_NOT_OPEN: ErrorSpec(
        409, False, "The alert is no longer open.", "Reload: it has resolved, or cleared before it fired."
    ),
    ErrorCode.ALERT_LINK_INVALID: ErrorSpec(
        400,
        False,
        "This link to acknowledge an alert is not valid, or has expired.",
        "Open the alert from the console's Alerts page.",
    ),
    ErrorCode.ALERT_BAD_SILENCE: ErrorSpec(
        422, False, "The silence's time range is not usable.", "End it after it starts and after now, within 30 days."
    ),
    ErrorCode.ALERT_BAD_SNOOZE: ErrorSpec(
        422, False, "The snooze is not a usable duration.", "Snooze for 1 h, 4 h, or until a time within 7 days."
    ),
    ErrorCode.INGEST_MALFORMED_JSON: ErrorSpec(
        400, False, "The request body is not valid JSON.", "Send a JSON object with Content-Type application/json."
    ),
    ErrorCode.INGEST_INVALID: ErrorSpec(
        422, False, "The request body does not match the schema.", "See /api/v1/docs for the fields and types."
    ),
    ErrorCode.INGEST_BODY_TOO_LARGE: ErrorSpec(413, False, "The request body is too large.", "Send smaller batches."),
    ErrorCode.INGEST_BATCH_TOO_LARGE: ErrorSpec(413, False, "The batch has too many items.", "Split the batch."),
    ErrorCode.INGEST_TIME_IN_FUTURE: ErrorSpec(
        422, False, "A timestamp is too far in the future.", "Check the agent's clock (use UTC)."
    ),
    ErrorCode.INGEST_RATE_LIMITED: ErrorSpec(
        429, True, "Too many requests for this token.", "Wait for Retry-After seconds, then send batches."
    ),
    ErrorCode.INGEST_UNKNOWN_AGENT: ErrorSpec(
        404, False, "No agent with that external_id in this tenant.", "Register the agent first."
    ),
    ErrorCode.INGEST_UNSUPPORTED_MEDIA: ErrorSpec(
        415, False, "The request body must be JSON.", "Set Content-Type: application/json."
    ),
    ErrorCode.INGEST_TIME_TOO_OLD: ErrorSpec(
        422,
        False,
        "A timestamp is older than the console keeps that record.",
        "Check the agent's clock (use UTC); drop reports older than the retention in /api/v1/docs.",
    ),
    ErrorCode.INTERNAL: ErrorSpec(500, True, "Internal error.", "Retry; if it persists, tell the platform team."),
    ErrorCode.SERVICE_UNAVAILABLE: ErrorSpec(
        503, True, "A dependency is unavailable.", "Retry after Retry-After seconds."
    ),
    ErrorCode.NOT_FOUND: ErrorSpec(404, False, "Not found.", "Check the URL."),
    ErrorCode.METHOD_NOT_ALLOWED: ErrorSpec(405, False, "Method not allowed.", "Check the API documentation."),
    ErrorCode.INVALID_INPUT: ErrorSpec(
        400,
        False,
        "The request carries text the console does not accept.",
        "Remove control characters (such as NUL) from the fields; nothing was changed.",
    ),
}


class InterfaceError(Exception):
    """An error with a catalog code, as the Python API raises it."""

    def __init__(
        self,
        code: ErrorCode,
        message: str | None = None,
        *,
        details: dict[str, Any] | None = None,
        retry_after: int | None = None,
    ) -> None:
        spec = CATALOG[code]
        self.code = code
        self.message = message or spec.message
        self.details = details or {}
        self.retry_after = retry_after
        super().__init__(f"{code}: {self.message}")

    @property
    def http_status(self) -> int:
        return CATALOG[self.code].http_status

    @property
    def is_recoverable(self) -> bool:
        return CATALOG[self.code].recoverable

    @property
    def recovery_suggestion(self) -> str:
        return CATALOG[self.code].suggestion

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "code": str(self.code),
            "message": self.message,
            "recoverable": self.is_recoverable,
            "suggestion": self.recovery_suggestion,
        }
        if self.details:
            body["details"] = self.details
        return {"error": body}

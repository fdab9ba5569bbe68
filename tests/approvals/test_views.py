"""The approvals pages (approvals/views.py; docs/approvals.md, "The inbox"): the inbox and
its history, deciding from it (and the refusals, shown where they were asked), one
request, the rules page, the agent page's card and the header's count."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape

import pytest
from django.utils import timezone

from approvals import views
from approvals.models import ApprovalRequest, ApprovalRule, State
from approvals.services import NewRequest, decide, expire_due, request_create, rule_add
from audit.models import AuditEntry
from audit.services import Actor
from tests.conftest import client_for
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db
INBOX = "/t/acme/approvals/"


def ask(agent, summary="Mail 40 customers about the outage", action="email.send", ago=0, **extra) -> ApprovalRequest:
    now = timezone.now() - timedelta(seconds=ago)
    request, _ = request_create(agent=agent, new=NewRequest(action, summary, **extra), now=now)
    return request


def decided(request, user, *, approve=True, comment="", role="operator") -> ApprovalRequest:
    return decide(request_id=request.pk, tenant_id=request.tenant_id, actor=Actor(user=user), role=role,
                  approve=approve, comment=comment)  # fmt: skip


def text(response) -> str:
    """What the person reads: the page's text, tags dropped, spaces folded."""
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", response.content.decode()))).strip()


def pending_part(response) -> str:
    html = response.content.decode()
    return html[html.index('id="approval-pending"') : html.index('id="history"')]


def history_part(response) -> str:
    html = response.content.decode()
    return html[html.index('id="approval-history"') :]


def decide_url(request: ApprovalRequest) -> str:
    return f"{INBOX}{request.pk}/decide/"


# --- the inbox ---------------------------------------------------------------------------


def test_the_inbox_lists_pending_requests_oldest_first_with_what_and_who_decides(viewer_a, agent_a, admin_a):
    ask(agent_a, "Newer: delete the staging bucket", action="storage.delete", ago=10)
    ask(agent_a, "Older: mail 40 customers", ago=60)
    rule_add(tenant_id=agent_a.tenant_id, actor=Actor(user=admin_a), action="deploy.*", needs_role="admin",
             needs_approvers=2)  # fmt: skip
    ask(agent_a, "Newest: deploy v2 to production", action="deploy.prod")
    response = client_for(viewer_a).get(INBOX)
    assert response.status_code == 200
    part = pending_part(response)
    order = [part.index(s) for s in ("Older: mail", "Newer: delete", "Newest: deploy")]
    assert order == sorted(order)
    shown = text(response)
    assert (
        "storage.delete · Worker 1 worker-1 · asked 10 s ago · expires in 29 min , then rejected by its timeout"
        in shown
    )
    assert "Needs an admin; two different people must approve. 0 of 2 approvals" in shown
    assert "Needs an operator or an admin." in shown
    assert f'href="/t/acme/agents/{agent_a.pk}/"' in part
    # The absolute time on hover, in UTC.
    assert re.search(
        r'<time datetime="[^"]+" title="\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC" data-ago>in 29 min</time>', part
    )


def test_a_viewer_reads_the_inbox_without_decide_forms_and_is_refused_a_decision(viewer_a, agent_a):
    request = ask(agent_a)
    response = client_for(viewer_a).get(INBOX)
    assert 'data-testid="decide"' not in response.content.decode()
    assert "You may read it; operators and admins decide." in text(response)
    refused = client_for(viewer_a).post(decide_url(request), {"decision": "approve"})
    assert refused.status_code == 403 and "Your role does not allow this" in text(refused)
    request.refresh_from_db()
    assert request.state == State.PENDING
    denied = AuditEntry.objects.get(action="approval.approve")
    assert (denied.outcome, denied.actor_label, denied.error_code) == ("denied", "vera", "E10004")


def test_details_are_shown_as_text_json_or_a_diff_and_always_escaped(operator_a, agent_a):
    ask(agent_a, "text", details="<script>alert('x')</script>\nsecond line")
    ask(agent_a, "json", details={"to": ["a@example.com"], "html": "<b>hi</b>"})
    ask(
        agent_a,
        "diff",
        details={"before": "retries: 3\ntimeout: 10", "after": "retries: 5\ntimeout: 10", "file": "x.yml"},
    )
    ask(agent_a, "json diff", details={"before": {"replicas": 2}, "after": {"replicas": 4}})
    html = client_for(operator_a).get(INBOX).content.decode()
    assert "<script>alert" not in html and "<b>hi</b>" not in html
    assert '<p class="details-text">&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;\nsecond line</p>' in html
    assert '<pre class="data">{\n  &quot;html&quot;: &quot;&lt;b&gt;hi&lt;/b&gt;&quot;,\n  &quot;to&quot;: [' in html
    assert '<span class="diff-del">-retries: 3</span>' in html
    assert '<span class="diff-add">+retries: 5</span>' in html
    assert '<span class="diff-same"> timeout: 10</span>' in html
    assert "&quot;file&quot;: &quot;x.yml&quot;" in html  # the object's other keys, beside the diff
    assert '<span class="diff-del">-  &quot;replicas&quot;: 2</span>' in html
    assert '<span class="diff-add">+  &quot;replicas&quot;: 4</span>' in html


def test_the_empty_inbox_says_what_happens_next(viewer_a, agent_a):
    shown = text(client_for(viewer_a).get(INBOX))
    assert "Nothing is waiting for a decision. When an agent asks before a step, its request appears here" in shown
    assert "Nothing decided yet." in shown


def test_the_history_lists_decided_requests_newest_first_and_filters_them(operator_a, admin_a, agent_a, tenant_a):
    other = AgentFactory.create(tenant=tenant_a, external_id="mailer-2", name="Mailer 2")
    approved = ask(agent_a, "Approved one", ago=300)
    rejected = ask(other, "Rejected one", action="storage.delete", ago=200)
    expired = ask(agent_a, "Expired one", ago=100, timeout=timedelta(seconds=10))
    decided(approved, operator_a, comment="fine")
    decided(rejected, admin_a, approve=False, comment="not the prod bucket", role="admin")
    expire_due(now=timezone.now())
    client = client_for(operator_a)

    part = history_part(client.get(INBOX))
    order = [part.index(s) for s in ("Expired one", "Rejected one", "Approved one")]
    assert order == sorted(order)
    assert "rejected by its timeout" in part and "“not the prod bucket”" in unescape(part)

    def listed(**query) -> list[str]:
        found = history_part(client.get(INBOX, query))
        return [s for s in ("Approved one", "Rejected one", "Expired one") if s in found]

    assert listed(agent="mailer-2") == ["Rejected one"]
    assert listed(action="email.send") == ["Approved one", "Expired one"]
    assert listed(decision="expired") == ["Expired one"]
    assert listed(decision="approved") == ["Approved one"]
    assert listed(decided_by="alice") == ["Rejected one"]
    assert listed(decided_by="timeout") == ["Expired one"]
    assert listed(decision="no-such") == ["Approved one", "Rejected one", "Expired one"]
    assert "No decided request matches these filters." in text(client.get(INBOX, {"agent": "nobody"}))
    assert expired.pk  # (named for the reader)


def test_the_history_pages_by_an_older_link_without_repeating_or_skipping(operator_a, agent_a, monkeypatch):
    monkeypatch.setattr(views, "HISTORY_PAGE", 2)
    at = timezone.now() - timedelta(minutes=5)
    for n in range(5):  # two of them asked at the same instant: the cursor holds the id too
        request, _ = request_create(agent=agent_a, new=NewRequest("email.send", f"Request {n}"),
                                    now=at + timedelta(seconds=min(n, 3)))  # fmt: skip
        decided(request, operator_a)
    client = client_for(operator_a)
    seen: list[str] = []
    url = INBOX
    for _ in range(5):
        part = history_part(client.get(url))
        seen += re.findall(r"Request \d", part)
        older = re.search(r'href="(/t/acme/approvals/\?[^"#]+)#history"[^>]*data-testid="history-older"', part)
        if older is None:
            break
        url = unescape(older[1])
    assert sorted(seen) == [f"Request {n}" for n in range(5)] and len(seen) == 5
    assert seen[0] in ("Request 3", "Request 4")


def test_the_live_parts_come_alone_to_htmx(operator_a, agent_a):
    ask(agent_a, "Mail them")
    client = client_for(operator_a)
    pending = client.get(INBOX, headers={"HX-Request": "true", "HX-Target": "approval-pending"})
    assert pending.content.decode().startswith('<div id="approval-pending"') and "Mail them" in text(pending)
    history = client.get(
        INBOX, {"decision": "approved"}, headers={"HX-Request": "true", "HX-Target": "approval-history"}
    )
    body = history.content.decode()
    assert body.startswith('<div id="approval-history"') and 'hx-get="/t/acme/approvals/?decision=approved"' in body


# --- deciding ----------------------------------------------------------------------------


def test_an_operator_approves_with_a_comment_and_sees_it_said(operator_a, agent_a):
    request = ask(agent_a)
    client = client_for(operator_a)
    response = client.post(decide_url(request), {"decision": "approve", "comment": "go ahead", "next": "inbox"})
    assert response.status_code == 302 and response["Location"] == INBOX
    request.refresh_from_db()
    assert (request.state, request.decided_by_label, request.comment) == ("approved", "oscar", "go ahead")
    page = client.get(INBOX)
    assert "Approved “Mail 40 customers about the outage” (email.send, worker-1): the agent is told at once." in text(
        page
    )
    assert "Mail 40 customers" not in pending_part(page) and "Mail 40 customers" in history_part(page)
    assert AuditEntry.objects.filter(action="approval.approve", actor_label="oscar").exists()


def test_a_rejection_needs_a_comment_and_the_refusal_shows_beside_the_form(operator_a, agent_a):
    request = ask(agent_a)
    client = client_for(operator_a)
    assert "Comment (optional to approve, required to reject" in text(client.get(INBOX))
    refused = client.post(decide_url(request), {"decision": "reject", "comment": "  "})
    assert refused.status_code == 422
    html = refused.content.decode()
    assert re.search(r'<textarea id="comment-[^"]+" name="comment"[^>]*aria-invalid="true"', html)
    assert 'data-testid="approval-refusal">Not decided: A rejection needs a comment. <code>E10358</code>' in html
    request.refresh_from_db()
    assert request.state == State.PENDING
    done = client.post(decide_url(request), {"decision": "reject", "comment": "not during the outage"})
    assert done.status_code == 302
    request.refresh_from_db()
    assert (request.state, request.comment) == ("rejected", "not during the outage")


def test_a_request_someone_else_decided_is_a_409_that_says_who_and_how(operator_a, admin_a, agent_a):
    request = ask(agent_a)
    decided(request, admin_a, approve=False, comment="too many", role="admin")
    refused = client_for(operator_a).post(decide_url(request), {"decision": "approve", "comment": "ok"})
    assert refused.status_code == 409
    shown = text(refused)
    assert re.search(r"Not decided: alice already rejected it at \d\d:\d\d:\d\d UTC: “too many”\. E10355", shown)
    assert "Mail 40 customers" in history_part(refused)  # the page is still the inbox, its history below
    request.refresh_from_db()
    assert (request.state, request.decided_by_label) == ("rejected", "alice")


def test_an_expired_request_is_a_409_and_its_page_says_how_it_ended(operator_a, agent_a):
    request = ask(agent_a, ago=60, timeout=timedelta(seconds=10))
    expire_due(now=timezone.now())
    refused = client_for(operator_a).post(decide_url(request), {"decision": "approve", "next": "detail"})
    assert refused.status_code == 409
    shown = text(refused)
    assert "Not decided: The request expired at" in shown and "E10356" in shown
    assert re.search(r"Expired at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC : rejected by its timeout\.", shown)


def test_two_approvers_the_first_is_one_of_two_and_cannot_approve_again(operator_a, admin_a, agent_a):
    rule_add(tenant_id=agent_a.tenant_id, actor=Actor(user=admin_a), needs_approvers=2)
    request = ask(agent_a)
    oscar = client_for(operator_a)
    first = oscar.post(decide_url(request), {"decision": "approve", "comment": "looks right"})
    assert first.status_code == 302
    page = oscar.get(INBOX)
    shown = text(page)
    assert "Your approval of “Mail 40 customers about the outage” (email.send, worker-1) is the first of two" in shown
    assert "1 of 2 approvals (by oscar: “looks right”)" in shown
    assert "You gave the first approval" in shown and 'value="approve"' not in pending_part(page)
    again = oscar.post(decide_url(request), {"decision": "approve"})
    assert again.status_code == 409 and "You have already approved this request. E10357" in text(again)
    request.refresh_from_db()
    assert request.state == State.PENDING
    assert client_for(admin_a).post(decide_url(request), {"decision": "approve"}).status_code == 302
    request.refresh_from_db()
    assert (request.state, request.decided_by_label) == ("approved", "alice")


def test_a_request_that_needs_an_admin_is_refused_to_an_operator(operator_a, admin_a, agent_a):
    rule_add(tenant_id=agent_a.tenant_id, actor=Actor(user=admin_a), action="email.*", needs_role="admin")
    request = ask(agent_a)
    oscar = client_for(operator_a)
    page = oscar.get(INBOX)
    assert "Only an admin may decide this one" in text(page) and 'data-testid="decide"' not in page.content.decode()
    refused = oscar.post(decide_url(request), {"decision": "approve"})
    assert refused.status_code == 403 and "E10359" in text(refused)
    request.refresh_from_db()
    assert request.state == State.PENDING
    assert client_for(admin_a).post(decide_url(request), {"decision": "approve"}).status_code == 302


def test_another_tenants_request_is_not_found(operator_a, agent_b):
    theirs = ask(agent_b)
    client = client_for(operator_a)
    assert client.get(f"{INBOX}{theirs.pk}/").status_code == 404
    assert client.post(decide_url(theirs), {"decision": "approve"}).status_code == 404
    theirs.refresh_from_db()
    assert theirs.state == State.PENDING
    assert "Mail 40 customers" not in client.get(INBOX).content.decode()


def test_a_decision_without_approve_or_reject_decides_nothing(operator_a, agent_a):
    request = ask(agent_a)
    refused = client_for(operator_a).post(decide_url(request), {"decision": "maybe"})
    assert refused.status_code == 400 and "Choose Approve or Reject." in text(refused)
    request.refresh_from_db()
    assert request.state == State.PENDING


# --- one request -------------------------------------------------------------------------


def test_a_pending_requests_page_has_its_forms_and_a_decided_one_says_who_decided(operator_a, admin_a, agent_a):
    request = ask(agent_a, details={"to": 40})
    client = client_for(operator_a)
    page = client.get(f"{INBOX}{request.pk}/")
    assert page.status_code == 200 and 'data-testid="decide"' in page.content.decode()
    assert 'name="next" value="detail"' in page.content.decode()
    done = client.post(decide_url(request), {"decision": "approve", "next": "detail", "comment": "ok"})
    assert done["Location"] == f"{INBOX}{request.pk}/"
    shown = text(client.get(done["Location"]))
    assert re.search(r"Approved by oscar at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC : “ok”", shown)
    assert "&quot;to&quot;: 40" in client.get(done["Location"]).content.decode()
    assert "in the audit trail" not in shown  # operators do not read the trail
    assert "This request in the audit trail" in text(client_for(admin_a).get(done["Location"]))


# --- the agent page ----------------------------------------------------------------------


def test_the_agent_page_shows_its_pending_requests_with_the_buttons(operator_a, agent_a, tenant_a):
    other = AgentFactory.create(tenant=tenant_a, external_id="mailer-2", name="Mailer 2")
    mine = ask(agent_a, "Mine: mail them")
    ask(other, "Another agent's")
    client = client_for(operator_a)
    page = client.get(f"/t/acme/agents/{agent_a.pk}/").content.decode()
    card = page[page.index('id="agent-approvals"') :]
    card = card[: card.index("</section>")]
    assert "Mine: mail them" in card and "Another agent's" not in card and 'value="approve"' in card
    done = client.post(decide_url(mine), {"decision": "approve", "next": "agent"})
    assert done["Location"] == f"/t/acme/agents/{agent_a.pk}/#agent-approvals"
    part = client.get(f"/t/acme/agents/{agent_a.pk}/", headers={"HX-Request": "true", "HX-Target": "agent-approvals"})
    assert part.content.decode().startswith('<section class="card" id="agent-approvals"')
    assert " hidden>" in part.content.decode().split("\n", 1)[0]  # nothing waits: no card


# --- rules -------------------------------------------------------------------------------


def test_only_admins_keep_the_rules(operator_a, admin_a, tenant_a):
    assert client_for(operator_a).get(f"{INBOX}rules/").status_code == 403
    assert client_for(operator_a).post(f"{INBOX}rules/add/", {"action": "deploy.*"}).status_code == 403
    assert not ApprovalRule.objects.exists()
    alice = client_for(admin_a)
    assert "No rules yet" in text(alice.get(f"{INBOX}rules/"))
    added = alice.post(f"{INBOX}rules/add/", {"action": "deploy.*", "selector": "env=prod", "needs_admin": "on",
                                              "two_approvers": "on"})  # fmt: skip
    assert added.status_code == 302
    rule = ApprovalRule.objects.get()
    assert (rule.action, rule.selector, rule.needs_role, rule.needs_approvers) == ("deploy.*", "env=prod", "admin", 2)
    page = text(alice.get(f"{INBOX}rules/"))
    assert "Rule added: “deploy.*” of agents matching env=prod needs an admin, two different approvers." in page
    assert AuditEntry.objects.filter(action="approval_rule.create", actor_label="alice").exists()


def test_a_bad_rule_is_refused_with_its_reason_and_the_typed_values_kept(admin_a):
    refused = client_for(admin_a).post(f"{INBOX}rules/add/", {"action": "deploy.*", "selector": "team=="})
    assert refused.status_code == 400
    html = refused.content.decode()
    assert 'data-testid="rule-error">The rule was not added: “selector”' in unescape(html) and "E10350" in html
    assert 'value="deploy.*"' in html and 'id="rule-selector" name="selector"' in html
    assert not ApprovalRule.objects.exists()


def test_an_admin_removes_a_rule_asked_to_confirm_first(admin_a, tenant_a, tenant_b):
    rule = rule_add(tenant_id=tenant_a.pk, actor=Actor(user=admin_a), action="deploy.*", needs_role="admin")
    theirs = ApprovalRule.objects.create(tenant=tenant_b, action="*")
    alice = client_for(admin_a)
    assert 'data-confirm="Remove the rule for deploy.*?' in alice.get(f"{INBOX}rules/").content.decode()
    assert alice.post(f"{INBOX}rules/{theirs.pk}/remove/").status_code == 404
    done = alice.post(f"{INBOX}rules/{rule.pk}/remove/")
    assert done.status_code == 302
    assert list(ApprovalRule.objects.values_list("pk", flat=True)) == [theirs.pk]
    assert "Rule removed: “deploy.*” needs an admin." in text(alice.get(f"{INBOX}rules/"))
    assert AuditEntry.objects.filter(action="approval_rule.delete", actor_label="alice").exists()


# --- the header --------------------------------------------------------------------------


def test_the_header_counts_pending_requests_and_leaves_it_to_the_socket_on_live_pages(viewer_a, agent_a, operator_a):
    client = client_for(viewer_a)

    def badge(path: str) -> tuple[str, str]:
        """(the badge's element, its text) in the page at ``path``."""
        found = re.search(r'<span id="approval-badge"[^>]*>([^<]*)</span>', client.get(path).content.decode())
        assert found is not None
        return found[0], found[1]

    assert " hidden>" in badge("/t/acme/events/")[0]  # nothing pending: hidden
    ask(agent_a, "one")
    decided(ask(agent_a, "decided"), operator_a)
    ask(agent_a, "two")
    element, count = badge("/t/acme/events/")
    assert count == "2" and " hidden" not in element
    assert 'href="/t/acme/approvals/"' in client.get("/t/acme/events/").content.decode()
    element, count = badge(INBOX)
    assert count == "" and " hidden" in element  # the live socket says the count

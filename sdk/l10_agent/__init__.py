"""The agent-side client of the L10 Operator Console.

from l10_agent import Agent

with Agent("http://console:8010", token, "crawler-7", labels={"team": "search"}) as agent:
    while True:
        with agent.task("crawl"):      # waits while paused, raises after a stop or past a quota
            for page in pages:
                agent.checkpoint()     # a pause "now" or a stop ends the task here
                crawl(page)
        agent.record_usage(model="gpt-4o", input_tokens=1200, output_tokens=300)
        decision = agent.request_approval("email.send", "Mail 40 customers")  # waits for a person
        if decision.approved:
            send_mail()
"""

from l10_agent.agent import Agent
from l10_agent.decisions import Decision
from l10_agent.errors import AgentPaused, AgentStopped, ApprovalRefused, Change, QuotaExceeded

__all__ = ["Agent", "AgentPaused", "AgentStopped", "ApprovalRefused", "Change", "Decision", "QuotaExceeded"]
__version__ = "0.1.0"

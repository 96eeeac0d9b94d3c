"""__NAME__: a deskhost escalation policy. `./build.sh` builds it; README.md says what next."""

import json
from typing import Optional

import wit_world
from componentize_py_types import Err
from wit_world.imports import config, types

SEVERITY = {
    types.Priority.URGENT: types.Severity.CRITICAL,
    types.Priority.HIGH: types.Severity.HIGH,
    types.Priority.MEDIUM: types.Severity.MEDIUM,
    types.Priority.LOW: types.Severity.LOW,
}


class WitWorld(wit_world.WitWorld):
    def escalate(self, ticket: types.Ticket, triage: types.TriageDecision,
                 reply: Optional[types.ReplyProposal]) -> types.EscalationSummary:
        try:
            next_step = json.loads(config.settings())["next_step"]
        except (ValueError, KeyError) as e:
            raise Err(types.PluginError(code="bad-settings", message=f"settings.json: {e!r}"))
        e = triage.escalate
        reason = f"{e.code}: {e.detail}" if e else "the triage policy asked for a human"
        open_questions = []
        if isinstance(reply, types.ReplyProposal_Abstain):
            open_questions.append(f"no reply draft: {reply.value.detail}")
        return types.EscalationSummary(
            headline=ticket.subject.strip() or f"Ticket {ticket.id}",
            reason=reason,
            customer_context=[],
            steps_tried=[],
            verified_facts=[],
            open_questions=open_questions,
            severity=SEVERITY[triage.priority.value],
            recommended_queue=triage.queue.value,
            next_step=next_step,
            summary=ticket.body[:300],
            citations=[],
            confidence=0.5,
        )

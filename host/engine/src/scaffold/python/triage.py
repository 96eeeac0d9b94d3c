"""__NAME__: a deskhost triage policy. `./build.sh` builds it; README.md says what next."""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import config, log, types


def settings():
    """settings.json: category, queue, escalate_words."""
    try:
        return json.loads(config.settings())
    except ValueError as e:
        raise Err(types.PluginError(code="bad-settings", message=f"settings.json: {e}"))


def label(value):
    return types.LabeledValue(value=value, confidence=0.5, evidence=[])


class WitWorld(wit_world.WitWorld):
    def triage(self, ticket: types.Ticket) -> types.TriageDecision:
        s = settings()
        text = f"{ticket.subject}\n{ticket.body}".lower()
        escalate = None
        for word in s["escalate_words"]:
            if word in text:
                log.log(types.LogLevel.INFO, f"escalating: the ticket says {word!r}")
                escalate = types.EscalationRequest(
                    code="keyword",
                    detail=f'the ticket says "{word}"',
                    evidence=[types.Evidence(source=types.EvidenceSource.TICKET,
                                             reference="ticket.body", quote=word)],
                )
                break
        return types.TriageDecision(
            category=label(s["category"]),
            queue=label(s["queue"]),
            priority=types.PriorityCall(
                value=types.Priority.HIGH if escalate else types.Priority.MEDIUM,
                confidence=0.5, evidence=[]),
            language=label(ticket.language or "und"),
            sentiment=types.SentimentCall(value=types.Sentiment.NEUTRAL, confidence=0.5,
                                          evidence=[]),
            extra_fields=[],
            tags=[],
            escalate=escalate,
            rationale=f"category {s['category']}, queue {s['queue']}",
        )

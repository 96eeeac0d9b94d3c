"""__NAME__: a deskhost reply policy. `./build.sh` builds it; README.md says what next."""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import config, kb, types


def failed(code, message):
    return Err(types.PluginError(code=code, message=message))


class WitWorld(wit_world.WitWorld):
    def reply(self, ticket: types.Ticket, triage: types.TriageDecision) -> types.ReplyProposal:
        try:
            limit = json.loads(config.settings())["limit"]
        except (ValueError, KeyError) as e:
            raise failed("bad-settings", f"settings.json: {e!r}")
        language = triage.language.value if triage.language.value != "und" else None
        try:
            hits = kb.search(ticket.subject, language, limit)
            if not hits:
                return types.ReplyProposal_Abstain(types.Abstention(
                    reason="no-match",
                    detail=f"the knowledge base has nothing for {ticket.subject!r}"))
            article = kb.get_article(hits[0].article_id)
        except Err as e:
            raise failed("kb-unavailable", repr(e.value))
        # Cite a verbatim sentence of the article: the host checks the quote is in it.
        sentences = [s.strip() for s in article.body.replace("\n", ".").split(".")]
        quote = next((s for s in sentences if len(s) >= 20), article.body.strip())
        return types.ReplyProposal_Draft(types.ReplyDraft(
            body=f"Hello,\n\n{quote}.\n\nSee also: {article.title}\n",
            language=article.language,
            citations=[types.Citation(article_id=article.id, quote=quote)],
            confidence=0.5,
        ))

// __NAME__: a deskhost reply policy. `./build.sh` builds it; README.md says what next.
// WIT records are objects with camelCase fields, variants `{ tag, val }`, `option` a value
// or undefined; throwing `{ payload: pluginError }` returns the `err` case.

import { settings } from 'deskhost:plugin/config@0.1.0';
import { search, getArticle } from 'deskhost:plugin/kb@0.1.0';

const failed = (code, message) => ({ payload: { code, message } });

export function reply(ticket, triage) {
  let limit;
  try {
    ({ limit } = JSON.parse(settings()));
  } catch (e) {
    throw failed('bad-settings', `settings.json: ${e.message}`);
  }
  const language = triage.language.value === 'und' ? undefined : triage.language.value;
  let hits;
  let article;
  try {
    hits = search(ticket.subject, language, limit);
    if (hits.length === 0) {
      return {
        tag: 'abstain',
        val: { reason: 'no-match', detail: `the knowledge base has nothing for "${ticket.subject}"` },
      };
    }
    article = getArticle(hits[0].articleId);
  } catch (e) {
    throw failed('kb-unavailable', JSON.stringify(e.payload ?? String(e)));
  }
  // Cite a verbatim sentence of the article: the host checks the quote is in it.
  const sentences = article.body.replaceAll('\n', '.').split('.').map((s) => s.trim());
  const quote = sentences.find((s) => s.length >= 20) ?? article.body.trim();
  return {
    tag: 'draft',
    val: {
      body: `Hello,\n\n${quote}.\n\nSee also: ${article.title}\n`,
      language: article.language,
      citations: [{ articleId: article.id, quote }],
      confidence: 0.5,
    },
  };
}

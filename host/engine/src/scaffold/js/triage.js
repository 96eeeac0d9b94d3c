// __NAME__: a deskhost triage policy. `./build.sh` builds it; README.md says what next.
// WIT records are objects with camelCase fields, enums their kebab-case names, `option` a
// value or undefined; throwing `{ payload: pluginError }` returns the `err` case.

import { log } from 'deskhost:plugin/log@0.1.0';
import { settings as readSettings } from 'deskhost:plugin/config@0.1.0';

// settings.json: category, queue, escalate_words.
function settings() {
  try {
    return JSON.parse(readSettings());
  } catch (e) {
    throw { payload: { code: 'bad-settings', message: `settings.json: ${e.message}` } };
  }
}

const label = (value) => ({ value, confidence: 0.5, evidence: [] });

export function triage(ticket) {
  const s = settings();
  const text = `${ticket.subject}\n${ticket.body}`.toLowerCase();
  const word = s.escalate_words.find((w) => text.includes(w));
  let escalate;
  if (word !== undefined) {
    log('info', `escalating: the ticket says "${word}"`);
    escalate = {
      code: 'keyword',
      detail: `the ticket says "${word}"`,
      evidence: [{ source: 'ticket', reference: 'ticket.body', quote: word }],
    };
  }
  return {
    category: label(s.category),
    queue: label(s.queue),
    priority: { value: escalate ? 'high' : 'medium', confidence: 0.5, evidence: [] },
    language: label(ticket.language ?? 'und'),
    sentiment: { value: 'neutral', confidence: 0.5, evidence: [] },
    extraFields: [],
    tags: [],
    escalate,
    rationale: `category ${s.category}, queue ${s.queue}`,
  };
}

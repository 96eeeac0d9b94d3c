// __NAME__: a deskhost escalation policy. `./build.sh` builds it; README.md says what next.
// WIT records are objects with camelCase fields, enums their kebab-case names, variants
// `{ tag, val }`, `option` a value or undefined; throwing `{ payload: pluginError }` returns
// the `err` case.

import { settings } from 'deskhost:plugin/config@0.1.0';

const SEVERITY = { urgent: 'critical', high: 'high', medium: 'medium', low: 'low' };

export function escalate(ticket, triage, reply) {
  let nextStep;
  try {
    nextStep = JSON.parse(settings()).next_step;
  } catch (e) {
    throw { payload: { code: 'bad-settings', message: `settings.json: ${e.message}` } };
  }
  const e = triage.escalate;
  return {
    headline: ticket.subject.trim() || `Ticket ${ticket.id}`,
    reason: e ? `${e.code}: ${e.detail}` : 'the triage policy asked for a human',
    customerContext: [],
    stepsTried: [],
    verifiedFacts: [],
    openQuestions: reply?.tag === 'abstain' ? [`no reply draft: ${reply.val.detail}`] : [],
    severity: SEVERITY[triage.priority.value],
    recommendedQueue: triage.queue.value,
    nextStep,
    summary: ticket.body.slice(0, 300),
    citations: [],
    confidence: 0.5,
  };
}

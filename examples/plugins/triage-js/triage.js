// A deskhost triage policy in JavaScript (jco + componentize-js).
//
// It reads the same operator settings as the Rust default (`category_queues`, `rules`,
// `tier_rules`, fallbacks) and decides with simple, explainable parts: a keyword lexicon for
// the category, stopword counts for the language, a small lexicon for sentiment. It is an
// example of the language binding and a starting point, not a trained model: the Rust
// triage-default is the one to beat (compare them with `deskhost plugin shadow` and
// `deskhost plugin diff`).
//
// Build: see ../build.sh. Imports and the export follow wit/world.wit; WIT records are plain
// objects with camelCase fields, enums are their kebab-case names, `option` is a value or
// undefined, and throwing `{ payload: pluginError }` returns the `err` case.

import { lookupCustomer } from 'deskhost:plugin/crm@0.1.0';
import { log } from 'deskhost:plugin/log@0.1.0';
import { settings as rawSettings } from 'deskhost:plugin/config@0.1.0';

// Category keywords (lowercase phrases, matched on whole words) for the demo taxonomy.
const KEYWORDS = {
  billing: ['invoice', 'invoices', 'charged', 'charged twice', 'refund', 'bill', 'billing',
    'subscription fee', 'rechnung', 'abbuchung', 'factura', 'cobraron', 'cobro', 'facture',
    'fatura', 'fattura', 'addebitata'],
  payments: ['payment', 'payout', 'payouts', 'chargeback', 'card declined', 'declined',
    'refusé', 'paiement', 'zahlung', 'pago', 'pagamento', 'transfer'],
  account_access: ['password', 'login', 'log in', 'sign in', '2fa', 'locked out', 'sso',
    'passwort', 'contraseña', 'mot de passe', 'senha', 'entrar', 'anmelden', 'reset'],
  bug: ['bug', 'crash', 'crashes', 'error', 'broken', 'wrong', 'stürzt', 'absturz', 'fehler',
    'not working'],
  outage: ['outage', 'down', 'unavailable', '502', '503'],
  security: ['hacked', 'phishing', 'compromised', 'unauthorized', 'api key', 'leaked',
    'exposed', 'bank details'],
  data_privacy: ['gdpr', 'personal data', 'delete my data', 'export', 'dsgvo', 'données',
    'datos personales', 'privacy'],
  feature_request: ['feature', 'idea', 'would be nice', 'suggestion', 'dark mode',
    'please add'],
  how_to: ['how do i', 'how to', 'how can i', 'set up', 'configure', 'question',
    'wie kann ich', 'cómo', 'comment'],
  cancellation: ['cancel', 'cancellation', 'close my account', 'kündigen', 'cancelar',
    'annuler', 'terminate'],
};

const STOPWORDS = Object.fromEntries(Object.entries({
  en: 'the a an and or but to of in on for with is are was were be it this that i my me we our you your have has do does not no can please',
  de: 'der die das und oder aber zu von im in auf für mit ist sind war ich mein meine wir unser sie ihr nicht kein bitte ein eine es',
  es: 'el la los las y o pero de del en para con es son fue yo mi mis nosotros usted no por favor un una que se',
  fr: 'le la les et ou mais de des du en pour avec est sont était je mon ma mes nous vous pas ne un une que il',
  pt: 'o a os as e ou mas de do da em para com é são foi eu meu minha nós você não um uma que por',
  it: 'il lo la gli le e o ma di del della in per con è sono ero io mio mia noi lei non un una che',
}).map(([lang, words]) => [lang, new Set(words.split(' '))]));

const NEGATIVE = ['angry', 'unacceptable', 'terrible', 'worst', 'frustrated', 'furious',
  'still broken', 'ridiculous', 'disappointed', 'awful', 'inakzeptabel', 'ärgerlich',
  'inaceptable', 'inacceptable', 'péssimo'];
const POSITIVE = ['thanks', 'thank you', 'great', 'love', 'awesome', 'appreciate', 'danke',
  'gracias', 'merci', 'obrigado', 'grazie'];

const PRIORITIES = ['low', 'medium', 'high', 'urgent'];

// Letters (cased, or CJK) and digits. The engine has no Unicode property escapes (\p{L}).
// ASCII is answered from the code (this runs per character, in an interpreter).
const isWordChar = (c) => {
  const code = c.charCodeAt(0);
  if (code < 128) {
    return (code >= 97 && code <= 122) || (code >= 65 && code <= 90) || (code >= 48 && code <= 57);
  }
  return c.toLowerCase() !== c.toUpperCase() || (c >= '\u3040' && c <= '\u9fff');
};

// Lowercase without the diacritics of the Latin alphabets deskhost ships with.
const FOLD = {
  'á': 'a', 'à': 'a', 'â': 'a', 'ä': 'a', 'ã': 'a', 'å': 'a', 'é': 'e', 'è': 'e', 'ê': 'e',
  'ë': 'e', 'í': 'i', 'ì': 'i', 'î': 'i', 'ï': 'i', 'ó': 'o', 'ò': 'o', 'ô': 'o', 'ö': 'o',
  'õ': 'o', 'ú': 'u', 'ù': 'u', 'û': 'u', 'ü': 'u', 'ç': 'c', 'ñ': 'n', 'ß': 'ss',
};
const fold = (word) => {
  const lower = word.toLowerCase();
  let ascii = true;
  for (let i = 0; i < lower.length && ascii; i++) ascii = lower.charCodeAt(i) < 128;
  // Plain ASCII has nothing to fold.
  if (ascii) return lower;
  return Array.from(lower).map((c) => FOLD[c] ?? c).join('');
};
const MAX_GAP = 3;

// [token, start, end] of every run of word characters (UTF-16 offsets), the token folded.
function words(text) {
  const out = [];
  let start = -1;
  for (let i = 0; i <= text.length; i++) {
    const word = i < text.length && isWordChar(text[i]);
    if (word && start < 0) start = i;
    if (!word && start >= 0) {
      out.push([fold(text.slice(start, i)), start, i]);
      start = -1;
    }
  }
  return out;
}

// Phrase elements as the rule language defines them (see plugins/sdk/src/phrases.rs):
// { word, prefix, suffix } or { gap: true }. Parsed once per phrase.
const PARSED = new Map();
function parsePhrase(phrase) {
  const cached = PARSED.get(phrase);
  if (cached) return cached;
  const elements = [];
  for (const part of phrase.split(/\s+/).filter((p) => p.length > 0)) {
    if (part === '..' || part === '…') {
      if (elements.length > 0 && !elements[elements.length - 1].gap) elements.push({ gap: true });
      continue;
    }
    const ws = words(part);
    ws.forEach(([w, start, end], i) => {
      elements.push({
        word: w,
        prefix: i === ws.length - 1 && part.slice(end).startsWith('*'),
        suffix: i === 0 && part.slice(0, start).endsWith('*'),
      });
    });
  }
  while (elements.length > 0 && elements[elements.length - 1].gap) elements.pop();
  PARSED.set(phrase, elements);
  return elements;
}

function accepts(e, token) {
  if (e.prefix && e.suffix) return token.includes(e.word);
  if (e.prefix) return token.startsWith(e.word);
  if (e.suffix) return token.endsWith(e.word);
  return token === e.word;
}

// The index after the phrase (from elements[ei]) when it matches starting at tokens[at]
// (tokens before `hi` only), else -1.
function matchAt(elements, ei, tokens, at, hi) {
  if (ei === elements.length) return at;
  const e = elements[ei];
  if (e.gap) {
    for (let skip = 0; skip <= MAX_GAP && at + skip <= hi; skip++) {
      const end = matchAt(elements, ei + 1, tokens, at + skip, hi);
      if (end >= 0) return end;
    }
    return -1;
  }
  if (at < hi && accepts(e, tokens[at][0])) return matchAt(elements, ei + 1, tokens, at + 1, hi);
  return -1;
}

// Whether a phrase's first word can occur among `words` (a Set of the text's folded words),
// read without parsing the phrase: most of a large rule set is ruled out this way.
function mayOccur(p, words) {
  let i = 0;
  let suffix = false;
  while (i < p.length && !isWordChar(p[i])) {
    if (p[i] === '*') suffix = true;
    i++;
  }
  let j = i;
  while (j < p.length && isWordChar(p[j])) j++;
  const prefix = p[j] === '*';
  const w = fold(p.slice(i, j));
  if (!prefix && !suffix) return words.has(w);
  const list = words.list;
  for (let k = 0; k < list.length; k++) {
    const t = list[k];
    if ((prefix && suffix && t.includes(w)) || (prefix && !suffix && t.startsWith(w))
      || (suffix && !prefix && t.endsWith(w))) return true;
  }
  return false;
}

// Many phrases compiled for one pass over a text (see Matcher in plugins/sdk/src/phrases.rs):
// each word is looked up in an index of exact first words and of the first/last two
// characters of prefix/suffix patterns.
class Matcher {
  constructor() {
    this.phrases = [];
    this.exact = new Map();
    this.prefix = new Map();
    this.suffix = new Map();
    this.scanAll = [];
  }

  // Adds phrases; returns [start, end) of their ids. With `words` (a Set of the text's folded
  // words), a phrase whose first word is a plain word not in the text is skipped unparsed:
  // per call, most of a large rule set never needs parsing.
  add(phrases, words) {
    const start = this.phrases.length;
    const push = (map, key, id) => {
      if (!map.has(key)) map.set(key, []);
      map.get(key).push(id);
    };
    for (const p of phrases) {
      const id = this.phrases.length;
      if (words && !mayOccur(p, words)) {
        this.phrases.push([]);
        continue;
      }
      const elements = parsePhrase(p);
      this.phrases.push(elements);
      const first = elements[0];
      if (!first || first.gap) continue;
      const chars = Array.from(first.word);
      if (!first.prefix && !first.suffix) push(this.exact, first.word, id);
      else if (first.prefix && !first.suffix && chars.length >= 2) push(this.prefix, chars.slice(0, 2).join(''), id);
      else if (first.suffix && !first.prefix && chars.length >= 2) push(this.suffix, chars.slice(-2).join(''), id);
      else this.scanAll.push(id);
    }
    return [start, this.phrases.length];
  }

  // Every occurrence [id, startToken, endToken] in text order.
  scan(text) {
    const tokens = text.tokens;
    const found = [];
    for (let at = 0; at < tokens.length; at++) {
      const token = tokens[at][0];
      const chars = Array.from(token);
      const ids = [
        ...(this.exact.get(token) ?? []),
        ...(this.prefix.get(chars.slice(0, 2).join('')) ?? []),
        ...(this.suffix.get(chars.slice(-2).join('')) ?? []),
        ...this.scanAll,
      ];
      for (const id of ids) {
        const end = matchAt(this.phrases[id], 0, tokens, at, tokens.length);
        if (end >= 0) found.push([id, at, end]);
      }
    }
    return found;
  }
}

// Folded word tokens with their spans, for the operator rules' phrase lookups.
class Text {
  constructor(text) {
    this.text = text;
    this.tokens = words(text);
  }

  // [start, end] (UTF-16 offsets) of the phrase's first match among tokens[lo..hi].
  findIn(elements, lo, hi) {
    if (elements.length === 0) return undefined;
    const tokens = this.tokens;
    const first = elements[0];
    for (let start = lo; start < hi; start++) {
      if (!accepts(first, tokens[start][0])) continue;
      const end = matchAt(elements, 0, tokens, start, hi);
      if (end >= 0) return [tokens[start][1], tokens[end - 1][2]];
    }
    return undefined;
  }

  // The verbatim text `phrase` matched, or undefined.
  find(phrase) {
    const span = this.findIn(parsePhrase(phrase), 0, this.tokens.length);
    return span && this.text.slice(span[0], span[1]);
  }

  findAll(phrases) {
    return phrases.map((p) => this.find(p)).filter((f) => f !== undefined);
  }

  // The text the first phrase that occurs matched, or undefined.
  findFirst(phrases) {
    for (const p of phrases) {
      const found = this.find(p);
      if (found !== undefined) return found;
    }
    return undefined;
  }

  clauses() {
    const out = [];
    let start = 0;
    for (let i = 1; i < this.tokens.length; i++) {
      const gap = this.text.slice(this.tokens[i - 1][2], this.tokens[i][1]);
      if (/[.!?;\n\r]/.test(gap)) {
        out.push([start, i]);
        start = i;
      }
    }
    if (start < this.tokens.length) out.push([start, this.tokens.length]);
    return out;
  }

  // Of the phrase ids [lo, hi), the first that occurs in `found`: its first occurrence's text.
  firstOf(found, [lo, hi]) {
    let best;
    for (const f of found) {
      if (f[0] >= lo && f[0] < hi && (best === undefined || f[0] < best[0])) best = f;
    }
    return best && this.text.slice(this.tokens[best[1]][1], this.tokens[best[2] - 1][2]);
  }

  // The clause text where an occurrence of every group of ids occurs, or undefined.
  allOf(found, groups) {
    if (groups.length === 0 || groups.some(([lo, hi]) => hi <= lo)) return undefined;
    for (const [clo, chi] of this.clauses()) {
      const spans = [];
      for (const [lo, hi] of groups) {
        const f = found.find((x) => x[0] >= lo && x[0] < hi && x[1] >= clo && x[2] <= chi);
        if (f === undefined) break;
        spans.push([this.tokens[f[1]][1], this.tokens[f[2] - 1][2]]);
      }
      if (spans.length === groups.length) {
        const start = Math.min(...spans.map((s) => s[0]));
        const end = Math.min(Math.max(...spans.map((s) => s[1])), start + 200);
        return this.text.slice(start, end);
      }
    }
    return undefined;
  }

  // The clause text where one phrase of every group occurs, or undefined.
  findAllOf(groups) {
    if (groups.length === 0 || groups.some((g) => g.length === 0)) return undefined;
    const parsed = groups.map((g) => g.map(parsePhrase));
    for (const [lo, hi] of this.clauses()) {
      const spans = [];
      for (const group of parsed) {
        const hit = group.map((e) => this.findIn(e, lo, hi)).find((s) => s !== undefined);
        if (hit === undefined) break;
        spans.push(hit);
      }
      if (spans.length === parsed.length) {
        const start = Math.min(...spans.map((s) => s[0]));
        const end = Math.min(Math.max(...spans.map((s) => s[1])), start + 200);
        return this.text.slice(start, end);
      }
    }
    return undefined;
  }
}

const evidence = (source, reference, quote) => ({ source, reference, quote: quote.slice(0, 200) });
const labeled = (value, confidence, why) => ({
  value,
  confidence: Math.max(0, Math.min(1, confidence)),
  evidence: why,
});

function classify(text, settings) {
  const ranked = Object.entries(KEYWORDS)
    .map(([category, phrases]) => [category, text.findAll(phrases)])
    .filter(([, found]) => found.length > 0)
    .sort((a, b) => b[1].length - a[1].length);
  if (ranked.length === 0) return labeled(settings.fallback_category ?? 'how_to', 0.2, []);
  const [best, found] = ranked[0];
  const second = ranked.length > 1 ? ranked[1][1].length : 0;
  const why = found.slice(0, 3).map((f) => evidence('model', 'keywords', f));
  return labeled(best, found.length / (found.length + second + 1), why);
}

function detectLanguage(ticket, text) {
  const counts = Object.fromEntries(Object.keys(STOPWORDS).map((l) => [l, 0]));
  for (const [token] of text.tokens) {
    for (const [lang, stop] of Object.entries(STOPWORDS)) {
      if (stop.has(token)) counts[lang] += 1;
    }
  }
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  const [guess, hits] = Object.entries(counts).reduce((a, b) => (b[1] > a[1] ? b : a));
  const detected = hits > 0 ? guess : 'und';
  const confidence = total > 0 ? hits / total : 0;
  const why = [evidence('ticket', 'language-detection', `${hits} ${detected} stopwords of ${total}`)];
  const declared = (ticket.language ?? '').toLowerCase();
  if (declared && (declared === detected || detected === 'und')) {
    return labeled(declared, Math.max(confidence, 0.9),
      [evidence('ticket', 'ticket.language', declared), ...why]);
  }
  return labeled(detected, confidence, why);
}

function detectSentiment(text) {
  const negative = text.findAll(NEGATIVE);
  const positive = text.findAll(POSITIVE);
  let value;
  let found;
  if (negative.length > positive.length) [value, found] = ['negative', negative];
  else if (positive.length > 0) [value, found] = ['positive', positive];
  else return { value: 'neutral', confidence: 0.6, evidence: [] };
  return {
    value,
    confidence: 0.5 + (0.5 * found.length) / (found.length + 1),
    evidence: found.slice(0, 3).map((f) => evidence('ticket', 'sentiment-lexicon', f)),
  };
}

// The effects of one operator rule, as the Rust default applies them.
function apply(decision, ruleId, rule, why) {
  if (rule.category) decision.category = labeled(rule.category, 1, [why]);
  if (rule.queue) decision.queue = labeled(rule.queue, 1, [why]);
  const floor = PRIORITIES.indexOf(rule.priority_at_least);
  if (floor > PRIORITIES.indexOf(decision.priority.value)) {
    decision.priority = { value: PRIORITIES[floor], confidence: 1, evidence: [why] };
  }
  for (const tag of rule.tags ?? []) {
    if (!decision.tags.includes(tag)) decision.tags.push(tag);
  }
  if (rule.escalate && decision.escalate === undefined) {
    decision.escalate = {
      code: rule.escalate,
      detail: rule.detail || `rule ${ruleId} requires a human`,
      evidence: [why],
    };
  }
}

function customerTier(ticket) {
  if (!ticket.customerId) return undefined;
  try {
    return lookupCustomer(ticket.customerId)?.tier;
  } catch (e) {
    log('warn', `CRM lookup failed: ${JSON.stringify(e.payload ?? String(e))}`);
    return undefined;
  }
}

function loadSettings() {
  const raw = rawSettings();
  if (raw.trim() === '') return {};
  try {
    return JSON.parse(raw);
  } catch (e) {
    throw { payload: { code: 'bad-settings', message: `plugin settings are not valid JSON: ${e.message}` } };
  }
}

export function triage(ticket) {
  const settings = loadSettings();
  const text = new Text(ticket.subject.trim() ? `${ticket.subject}\n${ticket.body}` : ticket.body);
  const category = classify(text, settings);
  const queueName = settings.category_queues?.[category.value];
  const queue = queueName
    ? labeled(queueName, category.confidence,
      [evidence('rule', 'category-queues', `${category.value} → ${queueName}`)])
    : labeled(settings.fallback_queue ?? 'success', 0.2, []);
  const decision = {
    category,
    queue,
    priority: { value: 'medium', confidence: 0.5, evidence: [] },
    language: detectLanguage(ticket, text),
    sentiment: detectSentiment(text),
    extraFields: [],
    tags: [],
    escalate: undefined,
    rationale: '',
  };
  const notes = [];
  // Every rule's phrases in one matcher: one pass over the ticket finds them all.
  const matcher = new Matcher();
  const present = new Set(text.tokens.map(([w]) => w));
  present.list = Array.from(present);
  const rules = (settings.rules ?? []).map((rule) => ({
    rule,
    any: matcher.add(rule.any ?? [], present),
    groups: (rule.all_of ?? []).map((g) => matcher.add(g, present)),
  }));
  const occurrences = matcher.scan(text);
  for (const { rule, any, groups } of rules) {
    const found = text.firstOf(occurrences, any) ?? text.allOf(occurrences, groups);
    if (found !== undefined) {
      apply(decision, rule.id, rule, evidence('rule', rule.id, found));
      notes.push(`rule ${rule.id} matched "${found}"`);
    }
  }
  const tierRules = settings.tier_rules ?? [];
  const tier = tierRules.length > 0 ? customerTier(ticket) : undefined;
  for (const rule of tierRules) {
    if (tier && (rule.tiers ?? []).some((t) => t.toLowerCase() === tier.toLowerCase())) {
      apply(decision, rule.id, rule, evidence('crm', 'customer.tier', tier));
      notes.push(`rule ${rule.id} matched tier ${tier}`);
    }
  }
  decision.rationale = `keywords: category ${decision.category.value} (${decision.category.confidence.toFixed(2)}), `
    + `queue ${decision.queue.value}, priority ${decision.priority.value}, language ${decision.language.value}`
    + notes.map((n) => `; ${n}`).join('');
  return decision;
}

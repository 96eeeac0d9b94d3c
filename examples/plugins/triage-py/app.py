"""A deskhost triage policy in Python (componentize-py).

It reads the same operator settings as the Rust default (`category_queues`, `rules`,
`tier_rules`, fallbacks) and decides with simple, explainable parts: a keyword lexicon for the
category, stopword counts for the language, a small lexicon for sentiment. It is an example of
the language binding and a starting point, not a trained model: the Rust triage-default is
the one to beat (compare them with `deskhost plugin shadow` and `deskhost plugin diff`).

Build: see ../build.sh. The generated bindings (`wit_world`) come from wit/world.wit.
"""

import functools
import json
import re

import wit_world
from componentize_py_types import Err
from wit_world.imports import config, crm, log, types

# Category keywords (lowercase phrases, matched on whole words) for the demo taxonomy.
KEYWORDS = {
    "billing": ["invoice", "invoices", "charged", "charged twice", "refund", "bill", "billing",
                "subscription fee", "rechnung", "abbuchung", "factura", "cobraron", "cobro",
                "facture", "fatura", "fattura", "addebitata"],
    "payments": ["payment", "payout", "payouts", "chargeback", "card declined", "declined",
                 "refusé", "paiement", "zahlung", "pago", "pagamento", "transfer"],
    "account_access": ["password", "login", "log in", "sign in", "2fa", "locked out",
                       "sso", "passwort", "contraseña", "mot de passe", "senha", "entrar",
                       "anmelden", "reset"],
    "bug": ["bug", "crash", "crashes", "error", "broken", "wrong", "stürzt", "absturz",
            "fehler", "not working"],
    "outage": ["outage", "down", "unavailable", "502", "503"],
    "security": ["hacked", "phishing", "compromised", "unauthorized", "api key", "leaked",
                 "exposed", "bank details"],
    "data_privacy": ["gdpr", "personal data", "delete my data", "export", "dsgvo",
                     "données", "datos personales", "privacy"],
    "feature_request": ["feature", "idea", "would be nice", "suggestion", "dark mode",
                        "please add"],
    "how_to": ["how do i", "how to", "how can i", "set up", "configure", "question",
               "wie kann ich", "cómo", "comment"],
    "cancellation": ["cancel", "cancellation", "close my account", "kündigen", "cancelar",
                     "annuler", "terminate"],
}

STOPWORDS = {
    "en": "the a an and or but to of in on for with is are was were be it this that i my me "
          "we our you your have has do does not no can please".split(),
    "de": "der die das und oder aber zu von im in auf für mit ist sind war ich mein meine "
          "wir unser sie ihr nicht kein bitte ein eine es".split(),
    "es": "el la los las y o pero de del en para con es son fue yo mi mis nosotros usted "
          "no por favor un una que se".split(),
    "fr": "le la les et ou mais de des du en pour avec est sont était je mon ma mes nous "
          "vous pas ne un une que il".split(),
    "pt": "o a os as e ou mas de do da em para com é são foi eu meu minha nós você não "
          "um uma que por".split(),
    "it": "il lo la gli le e o ma di del della in per con è sono ero io mio mia noi lei "
          "non un una che".split(),
}

NEGATIVE = ["angry", "unacceptable", "terrible", "worst", "frustrated", "furious", "still broken",
            "ridiculous", "disappointed", "awful", "inakzeptabel", "ärgerlich", "inaceptable",
            "inacceptable", "péssimo"]
POSITIVE = ["thanks", "thank you", "great", "love", "awesome", "appreciate", "danke", "gracias",
            "merci", "obrigado", "grazie"]

PRIORITIES = ["low", "medium", "high", "urgent"]
PRIORITY_ENUM = {
    "low": types.Priority.LOW,
    "medium": types.Priority.MEDIUM,
    "high": types.Priority.HIGH,
    "urgent": types.Priority.URGENT,
}


FOLD = str.maketrans({
    "á": "a", "à": "a", "â": "a", "ä": "a", "ã": "a", "å": "a", "é": "e", "è": "e", "ê": "e",
    "ë": "e", "í": "i", "ì": "i", "î": "i", "ï": "i", "ó": "o", "ò": "o", "ô": "o", "ö": "o",
    "õ": "o", "ú": "u", "ù": "u", "û": "u", "ü": "u", "ç": "c", "ñ": "n", "ß": "ss",
})
WORD = re.compile(r"[^\W_]+")
MAX_GAP = 3


def fold(word):
    return word.lower().translate(FOLD)


@functools.lru_cache(maxsize=4096)
def parse_phrase(phrase):
    """Phrase elements as the rule language defines them (see plugins/sdk/src/phrases.rs):
    ("word", text, prefix, suffix) or ("gap",)."""
    elements = []
    for part in phrase.split():
        if part in ("..", "…"):
            if elements and elements[-1][0] == "word":
                elements.append(("gap",))
            continue
        matches = list(WORD.finditer(part))
        for i, m in enumerate(matches):
            elements.append(("word", fold(m.group()),
                             i == len(matches) - 1 and part[m.end():].startswith("*"),
                             i == 0 and part[:m.start()].endswith("*")))
    while elements and elements[-1][0] == "gap":
        elements.pop()
    return tuple(elements)


def accepts(element, token):
    _, text, prefix, suffix = element
    if prefix and suffix:
        return text in token
    if prefix:
        return token.startswith(text)
    if suffix:
        return token.endswith(text)
    return token == text


def match_at(elements, tokens, at):
    """The index after the phrase when it matches starting at tokens[at], else None."""
    if not elements:
        return at
    first, rest = elements[0], elements[1:]
    if first[0] == "gap":
        for skip in range(MAX_GAP + 1):
            if at + skip <= len(tokens):
                end = match_at(rest, tokens, at + skip)
                if end is not None:
                    return end
        return None
    if at < len(tokens) and accepts(first, tokens[at][0]):
        return match_at(rest, tokens, at + 1)
    return None


class Matcher:
    """Many phrases compiled for one pass over a text (see Matcher in
    plugins/sdk/src/phrases.rs): each word is looked up in an index of exact first words and
    of the first/last two characters of prefix/suffix patterns."""

    def __init__(self):
        self.phrases = []
        self.exact, self.prefix, self.suffix, self.scan_all = {}, {}, {}, []

    def add(self, phrases, words=None):
        """Adds phrases; returns their id range. With `words` (the text's folded words), a
        phrase whose first word is a plain word not in the text is skipped unparsed."""
        start = len(self.phrases)
        for p in phrases:
            pid = len(self.phrases)
            if words is not None:
                m = WORD.search(p)
                plain = m is not None and "*" not in p[:m.start()] and p[m.end():m.end() + 1] != "*"
                if plain and fold(m.group()) not in words:
                    self.phrases.append(())
                    continue
            elements = parse_phrase(p)
            self.phrases.append(elements)
            if not elements or elements[0][0] == "gap":
                continue
            _, word, prefix, suffix = elements[0]
            if not prefix and not suffix:
                self.exact.setdefault(word, []).append(pid)
            elif prefix and not suffix and len(word) >= 2:
                self.prefix.setdefault(word[:2], []).append(pid)
            elif suffix and not prefix and len(word) >= 2:
                self.suffix.setdefault(word[-2:], []).append(pid)
            else:
                self.scan_all.append(pid)
        return (start, len(self.phrases))

    def scan(self, text):
        """Every occurrence (id, start token, end token), in text order."""
        tokens = text.tokens
        found = []
        for at, (token, _, _) in enumerate(tokens):
            ids = (self.exact.get(token, []) + self.prefix.get(token[:2], [])
                   + self.suffix.get(token[-2:], []) + self.scan_all)
            for pid in ids:
                end = match_at(self.phrases[pid], tokens, at)
                if end is not None:
                    found.append((pid, at, end))
        return found


class Text:
    """Folded word tokens with their spans, for the operator rules' phrase lookups."""

    def __init__(self, text):
        self.text = text
        self.tokens = [(fold(m.group()), m.start(), m.end()) for m in WORD.finditer(text)]

    def find_in(self, elements, lo, hi):
        tokens = self.tokens[lo:hi]
        if not elements:
            return None
        for start in range(len(tokens)):
            end = match_at(elements, tokens, start)
            if end is not None:
                return (tokens[start][1], tokens[end - 1][2])
        return None

    def find(self, phrase):
        """The verbatim text `phrase` matched, or None."""
        span = self.find_in(parse_phrase(phrase), 0, len(self.tokens))
        return self.text[span[0]:span[1]] if span else None

    def find_any(self, phrases):
        for phrase in phrases:
            found = self.find(phrase)
            if found is not None:
                return found
        return None

    def clauses(self):
        out, start = [], 0
        for i in range(1, len(self.tokens)):
            gap = self.text[self.tokens[i - 1][2]:self.tokens[i][1]]
            if any(c in gap for c in ".!?;\n\r"):
                out.append((start, i))
                start = i
        if start < len(self.tokens):
            out.append((start, len(self.tokens)))
        return out

    def span(self, start, end):
        return self.text[self.tokens[start][1]:self.tokens[end - 1][2]]

    def first_of(self, found, ids):
        """Of the phrase ids [lo, hi), the first that occurs: its first occurrence's text."""
        lo, hi = ids
        hits = [f for f in found if lo <= f[0] < hi]
        if not hits:
            return None
        best = min(hits, key=lambda f: (f[0], f[1]))
        return self.span(best[1], best[2])

    def all_of(self, found, groups):
        """The text of the first clause where an occurrence of every group of ids occurs."""
        if not groups or any(hi <= lo for lo, hi in groups):
            return None
        for clo, chi in self.clauses():
            spans = []
            for lo, hi in groups:
                hit = next((f for f in found if lo <= f[0] < hi and f[1] >= clo and f[2] <= chi), None)
                if hit is None:
                    break
                spans.append((self.tokens[hit[1]][1], self.tokens[hit[2] - 1][2]))
            else:
                start = min(s[0] for s in spans)
                end = min(max(s[1] for s in spans), start + 200)
                return self.text[start:end]
        return None

    def find_all_of(self, groups):
        """The clause span where one phrase of every group occurs, or None."""
        if not groups or any(not g for g in groups):
            return None
        parsed = [[parse_phrase(p) for p in g] for g in groups]
        for lo, hi in self.clauses():
            spans = []
            for group in parsed:
                hit = next((s for s in (self.find_in(e, lo, hi) for e in group) if s), None)
                if hit is None:
                    break
                spans.append(hit)
            else:
                start = min(s[0] for s in spans)
                end = min(max(s[1] for s in spans), start + 200)
                return self.text[start:end]
        return None


def evidence(source, reference, quote):
    return types.Evidence(source=source, reference=reference, quote=quote[:200])


def labeled(value, confidence, why):
    return types.LabeledValue(value=value, confidence=max(0.0, min(1.0, confidence)),
                              evidence=why)


def classify(text, settings):
    scores = {}
    for category, phrases in KEYWORDS.items():
        found = [f for f in (text.find(p) for p in phrases) if f is not None]
        if found:
            scores[category] = found
    if not scores:
        fallback = settings.get("fallback_category", "how_to")
        return labeled(fallback, 0.2, [])
    ranked = sorted(scores.items(), key=lambda kv: -len(kv[1]))
    best, found = ranked[0]
    second = len(ranked[1][1]) if len(ranked) > 1 else 0
    confidence = len(found) / (len(found) + second + 1)
    why = [evidence(types.EvidenceSource.MODEL, "keywords", f) for f in found[:3]]
    return labeled(best, confidence, why)


def detect_language(ticket, text):
    counts = {lang: 0 for lang in STOPWORDS}
    for token, _, _ in text.tokens:
        for lang, words in STOPWORDS.items():
            if token in words:
                counts[lang] += 1
    total = sum(counts.values())
    guess, hits = max(counts.items(), key=lambda kv: kv[1])
    detected = guess if hits else "und"
    confidence = hits / total if total else 0.0
    why = [evidence(types.EvidenceSource.TICKET, "language-detection",
                    f"{hits} {detected} stopwords of {total}")]
    declared = (ticket.language or "").lower()
    if declared and (declared == detected or detected == "und"):
        return labeled(declared, max(confidence, 0.9),
                       [evidence(types.EvidenceSource.TICKET, "ticket.language", declared)] + why)
    return labeled(detected, confidence, why)


def detect_sentiment(text):
    negative = [f for f in (text.find(p) for p in NEGATIVE) if f is not None]
    positive = [f for f in (text.find(p) for p in POSITIVE) if f is not None]
    if len(negative) > len(positive):
        value, found = types.Sentiment.NEGATIVE, negative
    elif positive:
        value, found = types.Sentiment.POSITIVE, positive
    else:
        return types.SentimentCall(value=types.Sentiment.NEUTRAL, confidence=0.6, evidence=[])
    why = [evidence(types.EvidenceSource.TICKET, "sentiment-lexicon", f) for f in found[:3]]
    return types.SentimentCall(value=value, confidence=0.5 + 0.5 * len(found) / (len(found) + 1),
                               evidence=why)


def apply(decision, rule_id, rule, why):
    """The effects of one operator rule, as the Rust default applies them."""
    if rule.get("category"):
        decision.category = labeled(rule["category"], 1.0, [why])
    if rule.get("queue"):
        decision.queue = labeled(rule["queue"], 1.0, [why])
    floor = rule.get("priority_at_least")
    current = PRIORITIES[decision.priority.value.value]
    if floor in PRIORITIES and PRIORITIES.index(floor) > PRIORITIES.index(current):
        decision.priority = types.PriorityCall(value=PRIORITY_ENUM[floor], confidence=1.0,
                                               evidence=[why])
    for tag in rule.get("tags", []):
        if tag not in decision.tags:
            decision.tags.append(tag)
    if rule.get("escalate") and decision.escalate is None:
        detail = rule.get("detail") or f"rule {rule_id} requires a human"
        decision.escalate = types.EscalationRequest(code=rule["escalate"], detail=detail,
                                                    evidence=[why])


def customer_tier(ticket):
    if not ticket.customer_id:
        return None
    try:
        customer = crm.lookup_customer(ticket.customer_id)
    except Err as e:
        log.log(types.LogLevel.WARN, f"CRM lookup failed: {e.value}")
        return None
    return customer.tier if customer else None


def load_settings():
    raw = config.settings()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError as e:
        raise Err(types.PluginError(code="bad-settings",
                                    message=f"plugin settings are not valid JSON: {e}"))


class WitWorld(wit_world.WitWorld):
    def triage(self, ticket: types.Ticket) -> types.TriageDecision:
        settings = load_settings()
        text = Text(f"{ticket.subject}\n{ticket.body}" if ticket.subject.strip() else ticket.body)
        category = classify(text, settings)
        queue_name = settings.get("category_queues", {}).get(category.value)
        if queue_name:
            queue = labeled(queue_name, category.confidence,
                            [evidence(types.EvidenceSource.RULE, "category-queues",
                                      f"{category.value} → {queue_name}")])
        else:
            queue = labeled(settings.get("fallback_queue", "success"), 0.2, [])
        decision = types.TriageDecision(
            category=category,
            queue=queue,
            priority=types.PriorityCall(value=types.Priority.MEDIUM, confidence=0.5, evidence=[]),
            language=detect_language(ticket, text),
            sentiment=detect_sentiment(text),
            extra_fields=[],
            tags=[],
            escalate=None,
            rationale="",
        )
        notes = []
        # Every rule's phrases in one matcher: one pass over the ticket finds them all.
        matcher = Matcher()
        present = {t[0] for t in text.tokens}
        rules = [(rule, matcher.add(rule.get("any", []), present),
                  [matcher.add(g, present) for g in rule.get("all_of", [])])
                 for rule in settings.get("rules", [])]
        occurrences = matcher.scan(text)
        for rule, any_ids, groups in rules:
            found = text.first_of(occurrences, any_ids)
            if found is None:
                found = text.all_of(occurrences, groups)
            if found is not None:
                apply(decision, rule["id"], rule, evidence(types.EvidenceSource.RULE, rule["id"], found))
                notes.append(f'rule {rule["id"]} matched "{found}"')
        tier_rules = settings.get("tier_rules", [])
        tier = customer_tier(ticket) if tier_rules else None
        for rule in tier_rules:
            if tier and tier.lower() in (t.lower() for t in rule.get("tiers", [])):
                apply(decision, rule["id"], rule,
                      evidence(types.EvidenceSource.CRM, "customer.tier", tier))
                notes.append(f"rule {rule['id']} matched tier {tier}")
        decision.rationale = (
            f"keywords: category {decision.category.value} ({decision.category.confidence:.2f}), "
            f"queue {decision.queue.value}, priority {PRIORITIES[decision.priority.value.value]}, "
            f"language {decision.language.value}"
            + "".join(f"; {n}" for n in notes)
        )
        return decision

//! Host checks on proposals: taxonomy, value ranges, sizes, and citations.
//!
//! The WIT types already guarantee the shape; these check what types cannot. A proposal that
//! fails is kept for the reviewer but never applied (fault `invalid-output`).

use crate::bindings::types;
use crate::config::Taxonomy;
use crate::records::ArticleRecord;
use deskhost_nlp::text::squash_whitespace;
use std::collections::BTreeMap;

const MAX_TAGS: usize = 20;
const MAX_TAG_LEN: usize = 64;
const MAX_EVIDENCE: usize = 20;
const MAX_QUOTE: usize = 1000;
const MAX_REPLY: usize = 16 * 1024;
const MIN_QUOTE_CHARS: usize = 12;

/// Problems found in one proposal (empty = valid).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<String>);

impl Problems {
    fn push(&mut self, p: impl Into<String>) {
        self.0.push(p.into());
    }

    /// True when nothing was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn confidence(p: &mut Problems, field: &str, c: f32) {
    if !c.is_finite() || !(0.0..=1.0).contains(&c) {
        p.push(format!(
            "{field}.confidence = {c} is not a probability in 0..1"
        ));
    }
}

fn evidence(p: &mut Problems, field: &str, list: &[types::Evidence]) {
    if list.len() > MAX_EVIDENCE {
        p.push(format!(
            "{field}.evidence has {} items (at most {MAX_EVIDENCE})",
            list.len()
        ));
    }
    if list.iter().any(|e| e.quote.chars().count() > MAX_QUOTE) {
        p.push(format!(
            "{field}.evidence has a quote over {MAX_QUOTE} characters"
        ));
    }
}

fn known(p: &mut Problems, field: &str, value: &str, allowed: &[String]) {
    if !allowed.is_empty() && !allowed.iter().any(|a| a == value) {
        p.push(format!(
            "{field} \"{value}\" is not in the workspace taxonomy ({})",
            allowed.join(", ")
        ));
    }
}

/// Whether `tag` looks like a language tag (`en`, `pt-BR`, `und`).
pub fn is_language_tag(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let primary_ok = parts
        .next()
        .is_some_and(|p| (2..=3).contains(&p.len()) && p.chars().all(|c| c.is_ascii_lowercase()));
    primary_ok
        && parts.all(|p| (2..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// Checks a triage decision against the taxonomy and ranges.
pub fn triage(d: &types::TriageDecision, taxonomy: &Taxonomy) -> Problems {
    let mut p = Problems::default();
    known(&mut p, "category", &d.category.value, &taxonomy.categories);
    known(&mut p, "queue", &d.queue.value, &taxonomy.queues);
    for (field, c, ev) in [
        ("category", d.category.confidence, &d.category.evidence),
        ("queue", d.queue.confidence, &d.queue.evidence),
        ("priority", d.priority.confidence, &d.priority.evidence),
        ("language", d.language.confidence, &d.language.evidence),
        ("sentiment", d.sentiment.confidence, &d.sentiment.evidence),
    ] {
        confidence(&mut p, field, c);
        evidence(&mut p, field, ev);
    }
    if !is_language_tag(&d.language.value) {
        p.push(format!(
            "language \"{}\" is not a language tag",
            d.language.value
        ));
    }
    for extra in &d.extra_fields {
        confidence(&mut p, &extra.field, extra.decision.confidence);
        evidence(&mut p, &extra.field, &extra.decision.evidence);
        if let Some(allowed) = taxonomy.fields.get(&extra.field) {
            known(&mut p, &extra.field, &extra.decision.value, allowed);
        }
    }
    if d.tags.len() > MAX_TAGS || d.tags.iter().any(|t| t.is_empty() || t.len() > MAX_TAG_LEN) {
        p.push(format!(
            "tags: at most {MAX_TAGS}, each 1..{MAX_TAG_LEN} characters"
        ));
    }
    if let Some(e) = &d.escalate
        && e.code.trim().is_empty()
    {
        p.push("escalate.code is empty");
    }
    p
}

/// Verifies citations: each article must have been returned to this run by the `kb`
/// capability, and each quote must be a verbatim span of its body (white space may differ).
/// Records a problem per bad citation and returns how many were bad.
pub fn citations(
    p: &mut Problems,
    field: &str,
    cites: &[types::Citation],
    seen: &BTreeMap<String, ArticleRecord>,
) -> usize {
    let before = p.0.len();
    for (i, c) in cites.iter().enumerate() {
        let Some(article) = seen.get(&c.article_id) else {
            p.push(format!(
                "{field}[{i}] cites article {} which the knowledge base did not return in this run",
                c.article_id
            ));
            continue;
        };
        let quote = squash_whitespace(&c.quote);
        if quote.chars().count() < MIN_QUOTE_CHARS {
            p.push(format!(
                "{field}[{i}] quote is shorter than {MIN_QUOTE_CHARS} characters"
            ));
        } else if !squash_whitespace(&article.body).contains(&quote)
            && !squash_whitespace(&article.title).contains(&quote)
        {
            p.push(format!(
                "{field}[{i}] quote \"{}\" is not in article {}",
                truncate(&quote, 80),
                c.article_id
            ));
        }
    }
    p.0.len() - before
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

/// Checks a reply proposal; a draft must rest on at least one verified citation.
pub fn reply(r: &types::ReplyProposal, seen: &BTreeMap<String, ArticleRecord>) -> Problems {
    let mut p = Problems::default();
    match r {
        types::ReplyProposal::Draft(d) => {
            if d.body.trim().is_empty() {
                p.push("draft.body is empty");
            }
            if d.body.len() > MAX_REPLY {
                p.push(format!(
                    "draft.body is {} bytes (at most {MAX_REPLY})",
                    d.body.len()
                ));
            }
            confidence(&mut p, "draft", d.confidence);
            if !is_language_tag(&d.language) {
                p.push(format!(
                    "draft.language \"{}\" is not a language tag",
                    d.language
                ));
            }
            if d.citations.is_empty() {
                p.push("the draft cites no article: drafts must be grounded in the knowledge base");
            }
            citations(&mut p, "draft.citations", &d.citations, seen);
        }
        types::ReplyProposal::Abstain(a) => {
            if a.reason.trim().is_empty() {
                p.push("abstain.reason is empty");
            }
        }
    }
    p
}

/// Checks an escalation packet.
pub fn escalation(
    e: &types::EscalationSummary,
    taxonomy: &Taxonomy,
    seen: &BTreeMap<String, ArticleRecord>,
) -> Problems {
    let mut p = Problems::default();
    confidence(&mut p, "escalation", e.confidence);
    known(
        &mut p,
        "recommended_queue",
        &e.recommended_queue,
        &taxonomy.queues,
    );
    if e.headline.trim().is_empty() || e.next_step.trim().is_empty() {
        p.push("headline and next_step must not be empty");
    }
    citations(&mut p, "escalation.citations", &e.citations, seen);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen() -> BTreeMap<String, ArticleRecord> {
        let a = ArticleRecord {
            id: "refunds".into(),
            title: "Refunds".into(),
            body: "Duplicate charges are refunded\nwithin 5 business days.".into(),
            language: "en".into(),
            collection: "public".into(),
            version: 1,
        };
        BTreeMap::from([(a.id.clone(), a)])
    }

    fn draft(cites: Vec<(&str, &str)>) -> types::ReplyProposal {
        types::ReplyProposal::Draft(types::ReplyDraft {
            body: "Hello".into(),
            language: "en".into(),
            citations: cites
                .into_iter()
                .map(|(a, q)| types::Citation {
                    article_id: a.into(),
                    quote: q.into(),
                })
                .collect(),
            confidence: 0.8,
        })
    }

    #[test]
    fn verified_citation_passes_across_line_wraps() {
        assert!(
            reply(
                &draft(vec![("refunds", "refunded within 5 business days")]),
                &seen()
            )
            .is_empty()
        );
    }

    #[test]
    fn forged_citations_are_rejected() {
        let p = reply(
            &draft(vec![("refunds", "refunded within 2 hours, guaranteed")]),
            &seen(),
        );
        assert!(p.0[0].contains("is not in article refunds"), "{p:?}");
        let p = reply(&draft(vec![("secret", "anything at all here")]), &seen());
        assert!(p.0[0].contains("did not return in this run"), "{p:?}");
        let p = reply(&draft(vec![]), &seen());
        assert!(p.0[0].contains("grounded"), "{p:?}");
    }

    #[test]
    fn language_tags() {
        assert!(is_language_tag("en") && is_language_tag("pt-BR") && is_language_tag("und"));
        assert!(!is_language_tag("English") && !is_language_tag("") && !is_language_tag("e"));
    }
}

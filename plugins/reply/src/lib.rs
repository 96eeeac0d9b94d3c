//! The default reply policy.
//!
//! Searches the knowledge base in the ticket's language (then in any language), reads the
//! best articles, and drafts a reply that quotes their most relevant sentences verbatim,
//! each one a citation the host verifies. Abstains, with a reason, when the ticket's
//! category needs a human or when no article covers enough of the ticket.

use deskhost_sdk::nlp::text::{content_terms, light_stem, sentence_ranges, token_ranges};
use deskhost_sdk::{
    Abstention, Citation, KbArticle, PluginError, ReplyDraft, ReplyProposal, Ticket,
    TriageDecision, kb, plugin_error, ticket_text,
};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    /// Hits to ask the KB for.
    search_limit: Option<u32>,
    /// Articles to read in full.
    articles_to_read: Option<usize>,
    /// Distinct ticket terms the quoted sentences must cover.
    min_matched_terms: Option<usize>,
    /// Share of the ticket's terms the quoted sentences must cover.
    min_coverage: Option<f32>,
    /// Sentences to quote at most.
    max_quotes: Option<usize>,
    /// Categories a human must answer.
    abstain_categories: Vec<String>,
    /// Escalation codes a human must answer (no draft for a legal threat).
    abstain_escalations: Vec<String>,
    /// Reply templates per language (defaults built in for en, de, es, fr, pt).
    templates: BTreeMap<String, Template>,
}

#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
struct Template {
    greeting: String,
    intro: String,
    closing: String,
    signoff: String,
}

fn builtin_template(language: &str) -> Template {
    let (greeting, intro, closing, signoff) = match language {
        "de" => (
            "Hallo,",
            "vielen Dank für Ihre Nachricht. Unser Hilfe-Center sagt dazu:",
            "Wenn das Ihr Anliegen nicht löst, antworten Sie einfach auf diese Nachricht.",
            "Viele Grüße\nIhr Support-Team",
        ),
        "es" => (
            "Hola:",
            "gracias por escribirnos. Esto es lo que indica nuestro centro de ayuda:",
            "Si esto no resuelve su consulta, responda a este mensaje y seguiremos ayudándole.",
            "Saludos cordiales,\nEl equipo de soporte",
        ),
        "fr" => (
            "Bonjour,",
            "merci pour votre message. Voici ce qu'indique notre centre d'aide :",
            "Si cela ne résout pas votre demande, répondez simplement à ce message.",
            "Cordialement,\nL'équipe support",
        ),
        "pt" => (
            "Olá,",
            "obrigado pela sua mensagem. Eis o que diz a nossa central de ajuda:",
            "Se isso não resolver o seu pedido, responda a esta mensagem.",
            "Atenciosamente,\nEquipe de suporte",
        ),
        _ => (
            "Hello,",
            "thank you for reaching out. Here is what our help center says:",
            "If this does not solve it, just reply to this message and we will take it from there.",
            "Best regards,\nThe Support Team",
        ),
    };
    Template {
        greeting: greeting.into(),
        intro: intro.into(),
        closing: closing.into(),
        signoff: signoff.into(),
    }
}

struct Policy;

impl deskhost_sdk::reply_world::Guest for Policy {
    fn reply(ticket: Ticket, triage: TriageDecision) -> Result<ReplyProposal, PluginError> {
        let settings: Settings = deskhost_sdk::settings()?;
        draft(&ticket, &triage, &settings)
    }
}

deskhost_sdk::export_reply!(Policy);

fn abstain(reason: &str, detail: impl Into<String>) -> Result<ReplyProposal, PluginError> {
    Ok(ReplyProposal::Abstain(Abstention {
        reason: reason.into(),
        detail: detail.into(),
    }))
}

/// A sentence of an article with the ticket terms it covers.
struct Candidate {
    article: usize,
    start: usize,
    end: usize,
    terms: BTreeSet<String>,
}

fn draft(
    ticket: &Ticket,
    triage: &TriageDecision,
    settings: &Settings,
) -> Result<ReplyProposal, PluginError> {
    if settings.abstain_categories.contains(&triage.category.value) {
        return abstain(
            "needs-human",
            format!(
                "category {} is answered by a person (reply settings: abstain_categories)",
                triage.category.value
            ),
        );
    }
    if let Some(e) = &triage.escalate
        && settings.abstain_escalations.contains(&e.code)
    {
        return abstain(
            "needs-human",
            format!(
                "escalated as {}: a person answers (reply settings: abstain_escalations)",
                e.code
            ),
        );
    }
    let language = match triage.language.value.as_str() {
        "und" => "en",
        other => other,
    };
    let text = ticket_text(ticket);
    let terms: Vec<String> = content_terms(&text, language)
        .into_iter()
        .filter(|t| t.chars().count() >= 3 && !t.chars().all(|c| c.is_ascii_digit()))
        .take(24)
        .collect();
    if terms.is_empty() {
        return abstain(
            "no-question",
            "the ticket has no content words to search for",
        );
    }
    // The host tokenises the query and drops stopwords itself; send the ticket's own words
    // (stemmed terms would miss inflected forms in the index). Bounded for long emails.
    let query: String = text.chars().take(1500).collect();
    let limit = settings.search_limit.unwrap_or(5);
    let mut hits = kb::search(&query, Some(language), limit)
        .map_err(|e| plugin_error("kb-unavailable", format!("{e:?}")))?;
    if hits.is_empty() {
        hits = kb::search(&query, None, limit)
            .map_err(|e| plugin_error("kb-unavailable", format!("{e:?}")))?;
    }
    if hits.is_empty() {
        return abstain(
            "no-relevant-article",
            "the knowledge base has no article matching this ticket",
        );
    }

    let wanted: BTreeSet<String> = terms.iter().cloned().collect();
    let mut articles: Vec<KbArticle> = Vec::new();
    for hit in hits.iter().take(settings.articles_to_read.unwrap_or(2)) {
        if let Ok(article) = kb::get_article(&hit.article_id) {
            articles.push(article);
        }
    }
    let mut candidates: Vec<Candidate> = Vec::new();
    for (a, article) in articles.iter().enumerate() {
        for range in sentence_ranges(&article.body) {
            let sentence = &article.body[range.clone()];
            let covered: BTreeSet<String> = token_ranges(sentence)
                .map(|r| light_stem(&sentence[r].to_lowercase()).to_string())
                .filter(|w| wanted.contains(w))
                .collect();
            // Headings and one-word list items quote badly.
            if !covered.is_empty() && sentence.split_whitespace().count() >= 4 {
                candidates.push(Candidate {
                    article: a,
                    start: range.start,
                    end: range.end,
                    terms: covered,
                });
            }
        }
    }
    // Greedy cover: take the sentence adding the most uncovered terms, then the next. The
    // best article leads; a sentence from another article must add two new terms to earn
    // a place (one shared word is how irrelevant quotes creep in).
    let max_quotes = settings.max_quotes.unwrap_or(3);
    let mut chosen: Vec<usize> = Vec::new();
    let mut covered: BTreeSet<String> = BTreeSet::new();
    let mut lead: Option<usize> = None;
    while chosen.len() < max_quotes {
        let best = candidates
            .iter()
            .enumerate()
            .filter(|(i, _)| !chosen.contains(i))
            .map(|(i, c)| (i, c.terms.difference(&covered).count(), c.terms.len()))
            .filter(|&(i, new, _)| {
                new > 0 && (lead.is_none_or(|a| a == candidates[i].article) || new >= 2)
            })
            .max_by_key(|&(i, new, total)| (new, total, std::cmp::Reverse(i)));
        let Some((i, _, _)) = best else { break };
        covered.extend(candidates[i].terms.iter().cloned());
        lead.get_or_insert(candidates[i].article);
        chosen.push(i);
    }
    if chosen.is_empty() {
        return abstain(
            "no-relevant-article",
            "no sentence of the best articles shares a key term with the ticket",
        );
    }
    // Long emails carry many incidental words; the first 16 key terms stand for the ticket.
    let considered = wanted.len().min(16);
    let coverage = covered.len() as f32 / considered as f32;
    if covered.len() < settings.min_matched_terms.unwrap_or(2)
        || coverage < settings.min_coverage.unwrap_or(0.25)
    {
        return abstain(
            "no-relevant-article",
            format!(
                "the best articles cover {} of the ticket's {} key terms ({:.0}%); too little to answer from",
                covered.len(),
                considered,
                coverage.min(1.0) * 100.0
            ),
        );
    }
    // Quote in reading order: by article, then position.
    chosen.sort_by_key(|&i| (candidates[i].article, candidates[i].start));
    let reply_language = articles
        .get(candidates[chosen[0]].article)
        .map_or(language, |a| a.language.as_str())
        .to_string();
    let template = settings
        .templates
        .get(&reply_language)
        .cloned()
        .unwrap_or_else(|| builtin_template(&reply_language));

    let mut body = format!("{}\n\n{}\n", template.greeting, template.intro);
    let mut citations = Vec::new();
    let mut last_article = usize::MAX;
    for &i in &chosen {
        let c = &candidates[i];
        let article = &articles[c.article];
        if c.article != last_article {
            body.push_str(&format!("\n{}:\n", article.title));
            last_article = c.article;
        }
        let quote = &article.body[c.start..c.end];
        body.push_str(&format!("• {quote}\n"));
        citations.push(Citation {
            article_id: article.id.clone(),
            quote: quote.to_string(),
        });
    }
    body.push_str(&format!("\n{}\n\n{}", template.closing, template.signoff));
    let confidence =
        (0.3 + 0.6 * coverage.min(1.0)) * if reply_language == language { 1.0 } else { 0.8 };
    Ok(ReplyProposal::Draft(ReplyDraft {
        body,
        language: reply_language,
        citations,
        confidence: confidence.clamp(0.0, 0.95),
    }))
}

//! __NAME__: a deskhost reply policy. `./build.sh` builds it; README.md says what next.

wit_bindgen::generate!({ world: "policy", path: "wit", generate_all });

// `Ticket`, `TriageDecision`, `ReplyProposal` and `PluginError` come with the world.
use deskhost::plugin::types::{Abstention, Citation, ReplyDraft};
use deskhost::plugin::{config, kb};

/// settings.json.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// How many knowledge-base hits to consider.
    limit: u32,
}

struct Policy;

fn failed(code: &str, message: String) -> PluginError {
    PluginError {
        code: code.into(),
        message,
    }
}

impl Guest for Policy {
    fn reply(ticket: Ticket, triage: TriageDecision) -> Result<ReplyProposal, PluginError> {
        let settings: Settings = serde_json::from_str(&config::settings())
            .map_err(|e| failed("bad-settings", format!("settings.json: {e}")))?;
        let language = Some(triage.language.value.as_str()).filter(|l| *l != "und");
        let hits = kb::search(&ticket.subject, language, settings.limit)
            .map_err(|e| failed("kb-unavailable", format!("{e:?}")))?;
        let Some(hit) = hits.first() else {
            return Ok(ReplyProposal::Abstain(Abstention {
                reason: "no-match".into(),
                detail: format!("the knowledge base has nothing for {:?}", ticket.subject),
            }));
        };
        let article = kb::get_article(&hit.article_id)
            .map_err(|e| failed("kb-unavailable", format!("{e:?}")))?;
        // Cite a verbatim sentence of the article: the host checks the quote is in it.
        let quote = article
            .body
            .split_terminator(['.', '\n'])
            .map(str::trim)
            .find(|s| s.len() >= 20)
            .unwrap_or(article.body.trim())
            .to_string();
        Ok(ReplyProposal::Draft(ReplyDraft {
            body: format!("Hello,\n\n{quote}.\n\nSee also: {}\n", article.title),
            language: article.language.clone(),
            citations: vec![Citation {
                article_id: article.id,
                quote,
            }],
            confidence: 0.5,
        }))
    }
}

export!(Policy);

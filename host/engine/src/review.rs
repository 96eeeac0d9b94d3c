//! The review queue's use cases, shared by the CLI and the HTTP API: list, show, act.
//! Edits are checked against the workspace's taxonomy before anything is written.

use crate::pipeline::checks::is_language_tag;
use crate::workspace::Workspace;
use deskhost_protocol::api::ReviewDetail;
use deskhost_protocol::proposal::ReplyProposal;
use deskhost_protocol::review::{ReviewActed, ReviewAction};
pub use deskhost_store::review::{ReviewError, ReviewQuery};

/// Review item `id` with its ticket version and the articles its reply draft cites.
pub async fn detail(
    ws: &Workspace,
    id: &str,
) -> Result<Option<ReviewDetail>, deskhost_store::store::StoreError> {
    let Some(item) = ws.store.review_item(id).await? else {
        return Ok(None);
    };
    let ticket = ws
        .store
        .ticket(&item.ticket_id, item.ticket_version)
        .await?
        .map(|t| t.input);
    let mut cited: Vec<&str> = match &item.payload.reply {
        Some(ReplyProposal::Draft(d)) => {
            d.citations.iter().map(|c| c.article_id.as_str()).collect()
        }
        _ => Vec::new(),
    };
    cited.sort_unstable();
    cited.dedup();
    let mut articles = Vec::new();
    for article_id in cited {
        if let Some(a) = ws.store.article(article_id).await? {
            articles.push(a);
        }
    }
    Ok(Some(ReviewDetail {
        item,
        ticket,
        articles,
    }))
}

/// Takes `action` on item `item_id` as `actor` (see [`deskhost_store::store::Store::act_on_review`]).
pub async fn act(
    ws: &Workspace,
    item_id: &str,
    actor: &str,
    action: &ReviewAction,
) -> Result<ReviewActed, ReviewError> {
    if let ReviewAction::Approve { edits } = action {
        let t = &ws.config.taxonomy;
        let known = |what: &str, value: &Option<String>, list: &[String]| match value {
            Some(v) if !list.is_empty() && !list.contains(v) => Err(ReviewError::Invalid(format!(
                "`{what}` {v:?} is not in the taxonomy of deskhost.toml (one of: {})",
                list.join(", ")
            ))),
            _ => Ok(()),
        };
        known("category", &edits.category, &t.categories)?;
        known("queue", &edits.queue, &t.queues)?;
        if let Some(p) = &edits.priority
            && serde_json::from_value::<deskhost_protocol::proposal::Priority>(
                serde_json::Value::String(p.clone()),
            )
            .is_err()
        {
            return Err(ReviewError::Invalid(format!(
                "`priority` {p:?} is not one of low, medium, high, urgent"
            )));
        }
        if let Some(l) = &edits.language
            && !is_language_tag(l)
        {
            return Err(ReviewError::Invalid(format!(
                "`language` {l:?} is not a language tag such as en or pt-BR"
            )));
        }
    }
    ws.store.act_on_review(item_id, actor, action).await
}

//! `kb`: search and read articles of the granted collections (what a reply may cite).

use super::*;

impl crate::bindings::kb::Host for HostState {
    async fn search(
        &mut self,
        query: String,
        language: Option<String>,
        limit: u32,
    ) -> wasmtime::Result<Result<Vec<types::KbHit>, types::CapabilityError>> {
        let (recorded, long) = arg(&query);
        let language_arg = language.as_deref().map(|l| arg(l).0);
        let args =
            serde_json::json!({ "query": recorded, "language": language_arg, "limit": limit });
        let live = async |ctx: &CallContext| {
            let collections = ctx
                .plugin
                .grants
                .kb
                .as_ref()
                .map(|g| g.collections.clone())
                .unwrap_or_default();
            if query.trim().is_empty() {
                CapResult::Err(types::CapabilityError::InvalidArgument(
                    "query is empty".into(),
                ))
            } else if long {
                CapResult::Err(too_long("query", query.len()))
            } else {
                match ctx.services.kb.search(
                    &query,
                    language.as_deref(),
                    &collections,
                    limit.min(MAX_LIST) as usize,
                ) {
                    Ok(hits) => {
                        let mut seen = ctx
                            .scope
                            .articles_seen
                            .lock()
                            .unwrap_or_else(|p| p.into_inner());
                        for h in &hits {
                            if let Some(a) = ctx.services.kb.article(&h.article_id) {
                                seen.insert(a.id.clone(), a);
                            }
                        }
                        CapResult::Ok(
                            hits.into_iter()
                                .map(|h| types::KbHit {
                                    article_id: h.article_id,
                                    title: h.title,
                                    language: h.language,
                                    snippet: h.snippet,
                                    score: h.score,
                                })
                                .collect(),
                        )
                    }
                    Err(e) => CapResult::Err(unavailable(e)),
                }
            }
        };
        self.call
            .call(CapabilityName::Kb, "search", args, true, live)
            .await
    }

    async fn get_article(
        &mut self,
        id: String,
    ) -> wasmtime::Result<Result<types::KbArticle, types::CapabilityError>> {
        let (recorded, long) = arg(&id);
        let args = serde_json::json!({ "id": recorded });
        let live = async |ctx: &CallContext| match (!long)
            .then(|| ctx.services.kb.article(&id))
            .flatten()
        {
            None => CapResult::Err(types::CapabilityError::NotFound(recorded.clone())),
            Some(a) if !ctx.plugin.grants.kb_collection(&a.collection) => {
                CapResult::Denied(format!(
                    "article {recorded} is in collection \"{}\", which [grants.kb] collections does not include",
                    a.collection
                ))
            }
            Some(a) => {
                ctx.scope
                    .articles_seen
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(a.id.clone(), a.clone());
                CapResult::Ok(crate::runtime::convert::article_to_wit(&a))
            }
        };
        self.call
            .call(CapabilityName::Kb, "get-article", args, true, live)
            .await
    }
}

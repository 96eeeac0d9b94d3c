//! `crm`: the customer of the ticket under decision, redacted to the granted fields.

use super::*;

impl crate::bindings::crm::Host for HostState {
    async fn lookup_customer(
        &mut self,
        id: String,
    ) -> wasmtime::Result<Result<Option<types::Customer>, types::CapabilityError>> {
        let (recorded, _) = arg(&id);
        let args = serde_json::json!({ "id": recorded });
        let live = async |ctx: &CallContext| {
            if ctx.scope.customer_id() != Some(id.as_str()) {
                CapResult::Denied(format!(
                    "customer {recorded} is not the customer of the ticket being decided"
                ))
            } else {
                match ctx.services.store.customer(&id).await {
                    Ok(Some((record, version))) => {
                        ctx.scope
                            .crm_versions
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(id.clone(), version);
                        CapResult::Ok(Some(redact_customer(&record, &ctx.plugin.grants)))
                    }
                    Ok(None) => CapResult::Ok(None),
                    Err(e) => CapResult::Err(unavailable(e)),
                }
            }
        };
        self.call
            .call(CapabilityName::Crm, "lookup-customer", args, false, live)
            .await
    }
}

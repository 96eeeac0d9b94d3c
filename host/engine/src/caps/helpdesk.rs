//! `helpdesk`: the ticket under decision and the same customer's other tickets.

use super::*;

impl crate::bindings::helpdesk::Host for HostState {
    async fn get_ticket(
        &mut self,
        id: String,
    ) -> wasmtime::Result<Result<types::Ticket, types::CapabilityError>> {
        let (recorded, long) = arg(&id);
        let args = serde_json::json!({ "id": recorded });
        let live = async |ctx: &CallContext| {
            if long {
                CapResult::Err(too_long("id", id.len()))
            } else if id == ctx.scope.ticket.input.id {
                CapResult::Ok(redact_ticket(&ctx.scope.ticket, &ctx.plugin.grants))
            } else {
                match ctx.services.store.latest_ticket(&id).await {
                    Ok(None) => CapResult::Err(types::CapabilityError::NotFound(recorded.clone())),
                    Ok(Some(other))
                        if other.input.customer_id.is_some()
                            && other.input.customer_id.as_deref() == ctx.scope.customer_id() =>
                    {
                        CapResult::Ok(redact_ticket(&other, &ctx.plugin.grants))
                    }
                    Ok(Some(_)) => CapResult::Denied(format!(
                        "ticket {recorded} belongs to another customer than the ticket being decided"
                    )),
                    Err(e) => CapResult::Err(unavailable(e)),
                }
            }
        };
        self.call
            .call(CapabilityName::Helpdesk, "get-ticket", args, false, live)
            .await
    }

    async fn recent_tickets(
        &mut self,
        customer_id: String,
        limit: u32,
    ) -> wasmtime::Result<Result<Vec<types::TicketSummary>, types::CapabilityError>> {
        let (recorded, _) = arg(&customer_id);
        let args = serde_json::json!({ "customer_id": recorded, "limit": limit });
        let live = async |ctx: &CallContext| {
            if ctx.scope.customer_id() != Some(customer_id.as_str()) {
                CapResult::Denied(format!(
                    "customer {recorded} is not the customer of the ticket being decided"
                ))
            } else {
                match ctx
                    .services
                    .store
                    .recent_tickets(
                        &customer_id,
                        &ctx.scope.ticket.input.id,
                        limit.min(MAX_LIST),
                    )
                    .await
                {
                    Ok(rows) => CapResult::Ok(
                        rows.into_iter()
                            .map(|r| types::TicketSummary {
                                id: r.id,
                                version: r.version,
                                subject: r.subject,
                                status: r.status,
                                category: r.category,
                                created_at: r.created_at,
                            })
                            .collect(),
                    ),
                    Err(e) => CapResult::Err(unavailable(e)),
                }
            }
        };
        self.call
            .call(
                CapabilityName::Helpdesk,
                "recent-tickets",
                args,
                false,
                live,
            )
            .await
    }
}

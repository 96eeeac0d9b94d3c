//! The OpenAPI 3 document of the API (`GET /v1/openapi.json`): the schemas are generated
//! from the protocol types the handlers send and receive, so the document cannot drift from
//! the code; the paths are listed here, one per route in [`crate::router`].

use deskhost_protocol::api::{
    Accepted, ActivePlugins, ApiErrorBody, Health, OneOrMany, ReviewDetail, VersionState,
};
use deskhost_protocol::records::TicketInput;
use deskhost_protocol::review::{ReviewActed, ReviewAction, ReviewReport};
use deskhost_protocol::run::{ReviewItem, RunLine};
use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

/// The document.
pub fn document() -> Value {
    let mut g = SchemaSettings::openapi3().into_generator();
    let schema = |s: schemars::Schema| s.to_value();
    let tickets_in = schema(g.subschema_for::<OneOrMany<TicketInput>>());
    let accepted = schema(g.subschema_for::<OneOrMany<Accepted>>());
    let decided = schema(g.subschema_for::<OneOrMany<RunLine>>());
    let run = schema(g.subschema_for::<RunLine>());
    let version = schema(g.subschema_for::<VersionState>());
    let items = schema(g.subschema_for::<Vec<ReviewItem>>());
    let item = schema(g.subschema_for::<ReviewDetail>());
    let report = schema(g.subschema_for::<ReviewReport>());
    let action = schema(g.subschema_for::<ReviewAction>());
    let acted = schema(g.subschema_for::<ReviewActed>());
    let plugins = schema(g.subschema_for::<ActivePlugins>());
    let health = schema(g.subschema_for::<Health>());
    let error = schema(g.subschema_for::<ApiErrorBody>());
    let ok = |description: &str, body: &Value| json!({ "description": description, "content": { "application/json": { "schema": body } } });
    let failures = |codes: &[(&str, &str)]| -> Value {
        codes
            .iter()
            .map(|(status, what)| {
                (
                    status.to_string(),
                    json!({ "description": what, "content": { "application/json": { "schema": error } } }),
                )
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let auth = [
        ("401", "no live token"),
        (
            "403",
            "the token's role may not, or the host or origin is not allowed",
        ),
    ];
    let with = |mut base: Value, status: &str, response: Value| {
        if let Some(map) = base.as_object_mut() {
            map.insert(status.to_string(), response);
        }
        base
    };
    let path_param = |name: &str| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } });
    let query = |name: &str, description: &str| json!({ "name": name, "in": "query", "required": false, "description": description, "schema": { "type": "string" } });
    let paths = json!({
        "/v1/tickets": { "post": {
            "summary": "Store and queue tickets (role ingest)",
            "parameters": [ { "name": "wait", "in": "query", "required": false, "description": "true: answer with the decisions (200)", "schema": { "type": "boolean" } } ],
            "requestBody": { "required": true, "content": { "application/json": { "schema": tickets_in } } },
            "responses": with(with(failures(&[auth[0], auth[1], ("400", "a ticket is not valid"), ("413", "body over the limit"), ("429", "the queue is full; see Retry-After")]),
                "202", ok("stored and queued", &accepted)), "200", ok("with ?wait=true: the decisions", &decided)),
        } },
        "/v1/tickets/{id}/versions/{version}": { "get": {
            "summary": "Where a ticket version stands (any token), and its decision (role reviewer)",
            "parameters": [ path_param("id"), path_param("version") ],
            "responses": with(failures(&[auth[0], auth[1], ("404", "no such version")]), "200", ok("pending or done", &version)),
        } },
        "/v1/runs/{run_id}": { "get": {
            "summary": "A recorded decision (role reviewer)",
            "parameters": [ path_param("run_id") ],
            "responses": with(failures(&[auth[0], auth[1], ("404", "no such run")]), "200", ok("the run line", &run)),
        } },
        "/v1/reviews": { "get": {
            "summary": "The review queue, riskiest first (role reviewer)",
            "parameters": [ query("status", "open (default), approved, rejected, all"), query("reason", "a review code"), query("queue", "proposed queue"), query("plugin", "id@version in the run"), query("assignee", "reviewer"), query("limit", "at most (100, up to 1000)") ],
            "responses": with(failures(&[auth[0], auth[1], ("400", "a bad filter")]), "200", ok("items", &items)),
        } },
        "/v1/reviews/report": { "get": {
            "summary": "Kept-unchanged share, outcomes, automation rate, backlog (role reviewer)",
            "responses": with(failures(&auth), "200", ok("the report", &report)),
        } },
        "/v1/reviews/{id}": { "get": {
            "summary": "One review item with its ticket and the cited articles (role reviewer)",
            "parameters": [ path_param("id") ],
            "responses": with(failures(&[auth[0], auth[1], ("404", "no such item")]), "200", ok("the item", &item)),
        } },
        "/v1/reviews/{id}/actions": { "post": {
            "summary": "Approve (with edits), reject or assign (role reviewer)",
            "parameters": [ path_param("id") ],
            "requestBody": { "required": true, "content": { "application/json": { "schema": action } } },
            "responses": with(failures(&[auth[0], auth[1], ("400", "not valid for this item"), ("404", "no such item"), ("409", "already decided by someone")]), "200", ok("what it did", &acted)),
        } },
        "/v1/plugins": { "get": {
            "summary": "Active plugins and shadows (any token)",
            "responses": with(failures(&auth), "200", ok("per slot", &plugins)),
        } },
        "/metrics": { "get": {
            "summary": "Prometheus text (any token)",
            "responses": with(failures(&auth), "200", json!({ "description": "text/plain; version=0.0.4" })),
        } },
        "/v1/connectors/{name}/webhook": { "post": {
            "summary": "A Zendesk webhook naming a changed ticket (no token: signed with X-Zendesk-Webhook-Signature over X-Zendesk-Webhook-Signature-Timestamp + body)",
            "security": [],
            "parameters": [ path_param("name") ],
            "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object", "description": "an event (detail.id) or trigger payload (ticket_id or ticket.id)" } } } },
            "responses": with(failures(&[("400", "the body names no ticket"), ("401", "missing, stale or wrong signature"), ("404", "no such connector"), ("502", "the help desk failed")]), "202", json!({ "description": "taken in: read, new_versions, closed" })),
        } },
        "/healthz": { "get": {
            "summary": "Liveness (no token)",
            "security": [],
            "responses": { "200": ok("ok", &health) },
        } },
        "/v1/openapi.json": { "get": {
            "summary": "This document (no token)",
            "security": [],
            "responses": { "200": { "description": "OpenAPI 3.0" } },
        } },
    });
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "deskhost",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Support-operations policies as sandboxed WebAssembly plugins: tickets in, decisions and the review queue out.",
        },
        "security": [ { "bearer": [] } ],
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "description": "`deskhost token create --name NAME --role ingest|reviewer|admin`" } },
            "schemas": g.take_definitions(true),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r.clone());
                }
                map.values().for_each(|x| refs(x, out));
            }
            Value::Array(list) => list.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }

    #[test]
    fn every_route_is_described_and_every_reference_resolves() {
        let doc = document();
        for path in [
            "/v1/tickets",
            "/v1/tickets/{id}/versions/{version}",
            "/v1/runs/{run_id}",
            "/v1/reviews",
            "/v1/reviews/report",
            "/v1/reviews/{id}",
            "/v1/reviews/{id}/actions",
            "/v1/plugins",
            "/metrics",
            "/healthz",
            "/v1/openapi.json",
            "/v1/connectors/{name}/webhook",
        ] {
            assert!(doc["paths"].get(path).is_some(), "{path} is not described");
        }
        let schemas = &doc["components"]["schemas"];
        for name in [
            "RunLine",
            "ReviewItem",
            "ReviewAction",
            "ApiErrorBody",
            "TicketInput",
        ] {
            assert!(schemas.get(name).is_some(), "no schema {name}");
        }
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(all.len() > 20, "{all:?}");
        for r in all {
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("{r} is not a component reference"));
            assert!(schemas.get(name).is_some(), "{r} does not resolve");
        }
    }
}

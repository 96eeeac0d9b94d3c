//! The model reaches the plugin through its bound data segment, and the classifier gives
//! the same predictions natively and inside the plugin.

use super::support::{PROBE_GRANTS, Ws, by_id, plugin_dir};
use deskhost_engine::runtime::bind::bind;
use deskhost_nlp::{Model, Scratch};

#[test]
fn binding_rewrites_a_valid_component_once() {
    let component = std::fs::read(plugin_dir().join("deskhost_triage.wasm")).unwrap_or_default();
    let data = vec![7u8; 200_000];
    let Ok(Some(bound)) = bind(&component, b"{\"rules\":[]}", &data) else {
        panic!("the SDK's slot must be found")
    };
    assert_eq!(
        bound.added_bytes,
        4 * 65536,
        "data and settings round up to whole pages"
    );
    let mut validator = wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all());
    validator
        .validate_all(&bound.component)
        .unwrap_or_else(|e| panic!("bound component is invalid: {e}"));
    // Binding is deterministic (the compile cache relies on it).
    let Ok(Some(again)) = bind(&component, b"{\"rules\":[]}", &data) else {
        panic!("binds twice")
    };
    assert_eq!(bound.component, again.component);
    // A core module is not a component.
    assert!(bind(b"\0asm\x01\0\0\0", b"", b"").is_err());
}

#[test]
fn native_and_wasm_predictions_agree() {
    let ws = Ws::trained();
    let tickets = ws.demo_tickets();
    let (_, results) = ws.run(&tickets);
    let results = by_id(&results);
    let bytes =
        std::fs::read(ws.path().join("plugins/triage-default/0.1.0/model.dhm")).unwrap_or_default();
    let model = Model::parse(&bytes).unwrap_or_else(|e| panic!("{e}"));
    let mut scratch = Scratch::default();
    let mut compared = 0;
    for t in &tickets {
        let text = deskhost_engine::train::ticket_text(
            t["subject"].as_str().unwrap_or(""),
            t["body"].as_str().unwrap_or(""),
        );
        model
            .vectorize(&text, &mut scratch, false)
            .unwrap_or_else(|e| panic!("{e}"));
        let native = model.predict(&scratch);
        let wasm = &results[t["id"].as_str().unwrap_or("")]["triage"]["proposal"];
        for p in &native {
            // Heads beyond the decision's own fields (e.g. `risk`) are under `fields`.
            let field = match &wasm[p.field.as_str()] {
                serde_json::Value::Null => &wasm["fields"][p.field.as_str()],
                own => own,
            };
            // Operator rules may override a field; compare where the model decided.
            if field["evidence"]
                .as_array()
                .and_then(|e| e.first())
                .is_some_and(|e| e["source"] != "model")
            {
                continue;
            }
            if field["evidence"].as_array().is_some_and(Vec::is_empty) {
                continue;
            }
            assert_eq!(
                field["value"].as_str(),
                Some(p.label.as_str()),
                "{} {}",
                t["id"],
                p.field
            );
            let wasm_confidence = field["confidence"].as_f64().unwrap_or(-1.0);
            let native_confidence = (f64::from(p.confidence) * 10_000.0).round() / 10_000.0;
            assert_eq!(
                wasm_confidence, native_confidence,
                "{} {}",
                t["id"], p.field
            );
            compared += 1;
        }
    }
    assert!(compared >= 60, "compared {compared} field decisions");
}

/// The default triage plugin reads its model's rows through `config.read-data` (two calls a
/// ticket: the bucket index entries, then the rows), each audited like any host call.
#[tokio::test]
async fn the_triage_plugin_reads_its_model_rows_through_the_host() {
    let ws = Ws::trained();
    let tickets = ws.demo_tickets();
    let (_, results) = ws.run(&tickets[..5]);
    for r in &results {
        let calls = r["triage"]["stats"]["host_calls"].as_u64().unwrap_or(0);
        assert!(calls >= 2, "{r}");
    }
    let db = ws.db().await;
    let sql = format!(
        "SELECT COUNT(*) FROM audit WHERE kind = 'host-call' AND {} = 'triage' AND {} = 'read-data' AND {} = 'ok'",
        ws.json_text("payload", "stage"),
        ws.json_text("payload", "function"),
        ws.json_text("payload", "outcome"),
    );
    // Built from constant column paths only.
    let reads: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(&db)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reads, 10, "two audited reads per ticket");
}

/// `config.read-data` answers the ranges in order and refuses one outside the data with a
/// message naming it (the plugin gets a `capability-error`, not a trap).
#[test]
fn read_data_answers_ranges_in_order_and_names_one_outside_the_data() {
    let ws = Ws::new();
    let probe = ws.install_probe(
        "probe",
        "triage",
        serde_json::json!({ "mode": "read-data" }),
        &format!("data = \"data.bin\"\n{PROBE_GRANTS}"),
    );
    let data: Vec<u8> = (0..1003u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(ws.path().join("plugins/probe/0.1.0/data.bin"), data)
        .unwrap_or_else(|e| panic!("{e}"));
    ws.set_slot("triage", Some(&probe));
    let (_, results) = ws.run(&ws.demo_tickets()[..1]);
    let seen = results[0]["triage"]["proposal"]["rationale"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(
        seen,
        "read Ok([3, 4, 0, 247, 248, 249]); outside Err(CapabilityError::InvalidArgument(\"range 1 (1 bytes at offset 18446744073709551615) is not inside the data (1003 bytes)\"))",
        "{}",
        results[0]
    );
}

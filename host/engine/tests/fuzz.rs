//! Property tests (proptest) for everything that parses outside input: ticket JSON through
//! the JSON Lines reader into the store, manifests (and the paths they name), the workspace
//! config, the model blob reader, and KB/CRM import lines. Each bad input must give an error
//! that names the input, never a panic, and store nothing.
//!
//! CI runs the default case counts (a few seconds). To run longer, e.g. for an hour:
//! `PROPTEST_CASES=200000 cargo test --release -p deskhost-engine --test fuzz`.

use deskhost_engine::config::WorkspaceConfig;
use deskhost_engine::jsonl;
use deskhost_engine::manifest::{FileKey, Manifest, ManifestFiles};
use deskhost_engine::records::{ArticleRecord, TicketInput, check_collection, check_id};
use deskhost_engine::store::Store;
use deskhost_nlp::model::{HeadSpec, ModelWriter, RowSpec};
use deskhost_nlp::{DType, FeatureSpec, Model, Scratch};
use proptest::prelude::*;
use std::path::Path;

/// Strings that stress parsers: control characters, bidi overrides, quotes, long runs,
/// non-ASCII.
fn nasty_string() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,40}",
        "[\\x00-\\x1f\\x7f\u{80}-\u{9f}\u{202e}\u{200b}\"'\\\\{}\\[\\]:,a-z]{0,30}",
        "(\\.\\./){0,4}[a-z/]{0,20}",
        Just(String::new()),
        (1usize..5).prop_map(|n| "x".repeat(n * 100)),
    ]
}

/// A JSON value shaped roughly like a ticket, with random types and contents.
fn ticket_like() -> impl Strategy<Value = serde_json::Value> {
    let field = prop_oneof![
        nasty_string().prop_map(serde_json::Value::String),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        Just(serde_json::Value::Null),
        proptest::collection::vec(nasty_string(), 0..3).prop_map(|v| serde_json::json!(v)),
    ];
    let keys = prop_oneof![
        Just("id"),
        Just("subject"),
        Just("body"),
        Just("customer_id"),
        Just("tags"),
        Just("language"),
        Just("messages"),
        Just("labels"),
        Just("subjet"),
    ];
    proptest::collection::vec((keys, field), 0..7).prop_map(|pairs| {
        serde_json::Value::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Ticket lines (valid, invalid, not JSON, not UTF-8) through the reader and the store:
    /// every rejected line is named, only checked tickets are stored, and a stored ticket
    /// reads back as it was given.
    #[test]
    fn ticket_ingest(lines in proptest::collection::vec(
        prop_oneof![
            3 => ticket_like().prop_map(|v| v.to_string().into_bytes()),
            1 => proptest::collection::vec(any::<u8>(), 0..60),
        ],
        1..12,
    )) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("tickets.jsonl");
        let mut bytes = Vec::new();
        for l in &lines {
            let clean: Vec<u8> = l.iter().copied().filter(|b| *b != b'\n').collect();
            bytes.extend_from_slice(&clean);
            bytes.push(b'\n');
        }
        std::fs::write(&path, &bytes).unwrap_or_else(|e| panic!("{e}"));
        let parsed = jsonl::read::<TicketInput>(&path, TicketInput::check)
            .unwrap_or_else(|e| panic!("{e}"));
        for r in &parsed.rejected {
            prop_assert!(r.starts_with(&format!("{}:", path.display())), "{r}");
            prop_assert!(r.ends_with("; line skipped"), "{r}");
        }
        let tickets: Vec<TicketInput> = parsed.records.into_iter().map(|(_, t)| t).collect();
        let rt = runtime();
        rt.block_on(async {
            let store = Store::open(&dir.path().join("t.db")).await.unwrap_or_else(|e| panic!("{e}"));
            let ingested = store.ingest_tickets(&tickets).await.unwrap_or_else(|e| panic!("{e}"));
            let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tickets")
                .fetch_one(store.pool())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let distinct = ingested.iter().filter(|i| i.new_version).count() as i64;
            assert_eq!(stored, distinct, "only checked tickets are stored");
            for (t, i) in tickets.iter().zip(&ingested) {
                let back = store.ticket(&i.id, i.version).await.unwrap_or_else(|e| panic!("{e}"));
                let back = back.unwrap_or_else(|| panic!("{} v{} stored", i.id, i.version));
                assert_eq!(back.input.content_hash(), t.content_hash());
            }
        });
    }

    /// Manifests: random text and mutations of a valid one parse or fail naming the file.
    #[test]
    fn manifest_parse(text in prop_oneof![
        ".{0,200}",
        (0usize..400, any::<char>()).prop_map(|(at, c)| {
            let mut m = VALID_MANIFEST.to_string();
            let at = at.min(m.len());
            let at = (0..=at).rev().find(|i| m.is_char_boundary(*i)).unwrap_or(0);
            m.insert(at, c);
            m
        }),
    ]) {
        if let Err(e) = Manifest::parse(&text, Path::new("fuzz/plugin.toml")) {
            prop_assert!(e.to_string().contains("fuzz/plugin.toml"), "{e}");
        }
    }

    /// The files a manifest names resolve inside its directory or are refused.
    #[test]
    fn manifest_paths(rel in "(\\.\\./|\\./|/|[a-z]{1,3}/){0,4}[a-z.]{1,6}") {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let plugin = dir.path().join("p");
        std::fs::create_dir_all(plugin.join("a")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(plugin.join("a/x.bin"), b"x").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("outside.bin"), b"secret").unwrap_or_else(|e| panic!("{e}"));
        let text = VALID_MANIFEST.replace("data = \"model.dhm\"", &format!("data = {:?}", rel));
        let manifest_path = plugin.join("plugin.toml");
        let Ok(m) = Manifest::parse(&text, &manifest_path) else { return Ok(()) };
        match m.resolve(&manifest_path, FileKey::Data) {
            Ok(Some(p)) => {
                let real_dir = std::fs::canonicalize(&plugin).unwrap_or_else(|e| panic!("{e}"));
                let inside = std::fs::canonicalize(&p).map_or_else(
                    |_| p.starts_with(&plugin),
                    |real| real.starts_with(&real_dir),
                );
                prop_assert!(inside, "{rel} resolved to {}", p.display());
            }
            Ok(None) => prop_assert!(false, "data is set"),
            Err(e) => prop_assert!(e.to_string().contains("plugin.toml:"), "{e}"),
        }
    }

    /// The workspace config: mutations of the demo config parse or fail naming the file.
    #[test]
    fn config_parse(at in 0usize..3000, c in any::<char>(), cut in proptest::bool::ANY) {
        let mut text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/workspace/deskhost.toml"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let at = at.min(text.len());
        let at = (0..=at).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        if cut {
            text.truncate(at);
        } else {
            text.insert(at, c);
        }
        if let Err(e) = WorkspaceConfig::parse(&text, Path::new("fuzz/deskhost.toml")) {
            prop_assert!(e.to_string().contains("fuzz/deskhost.toml"), "{e}");
        }
    }

    /// The model reader: random bytes never panic; any change to a valid model's bytes is
    /// caught by its digest; what parses can be used without panicking.
    #[test]
    fn model_blob(flips in proptest::collection::vec((any::<usize>(), 1u8..=255), 1..4),
                  cut in proptest::option::of(any::<usize>()),
                  noise in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = Model::parse(&noise);
        let valid = tiny_model();
        let mut bytes = valid.clone();
        for (at, x) in &flips {
            let i = at % bytes.len();
            bytes[i] ^= x;
        }
        if let Some(c) = cut {
            bytes.truncate(c % bytes.len());
        }
        if let Ok(model) = Model::parse(&bytes) {
            if bytes != valid {
                prop_assert!(model.verify_digest().is_err(), "a changed model passes its digest");
            }
            let mut scratch = Scratch::default();
            prop_assert_eq!(model.vectorize("refund my password please", &mut scratch, true), Ok(()));
            let _ = model.predict(&scratch);
        }
    }

    /// KB and CRM lines: checks never panic, and bad ids and collections are named.
    #[test]
    fn kb_and_crm_lines(id in nasty_string(), collection in nasty_string(), language in nasty_string()) {
        let article = ArticleRecord {
            id: id.clone(),
            title: "t".into(),
            body: "b".into(),
            language,
            collection: collection.clone(),
            version: 0,
        };
        let _ = serde_json::to_string(&article);
        match check_id("id", &id) {
            Ok(()) => prop_assert!(!id.is_empty() && id.len() <= 128),
            Err(e) => prop_assert!(e.contains("`id`"), "{e}"),
        }
        if check_collection(&collection).is_ok() {
            prop_assert!(!collection.contains('/') && !collection.contains('.'));
        }
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let line = serde_json::json!({ "id": id, "tier": collection });
        let rt = runtime();
        rt.block_on(async {
            let store = Store::open(&dir.path().join("c.db")).await.unwrap_or_else(|e| panic!("{e}"));
            let map = line.as_object().cloned().unwrap_or_default();
            let result = store.import_customer(&map, false).await;
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM customers")
                .fetch_one(store.pool())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(n, i64::from(result.is_ok()), "a failed import stores nothing");
        });
    }
}

const VALID_MANIFEST: &str = r#"id = "fuzz-plugin"
version = "0.1.0"
kind = "triage"
wit = "0.1.0"
component = "c.wasm"
sha256 = "abababababababababababababababababababababababababababababababab"
config = "settings.json"
data = "model.dhm"

[limits]
fuel = 1000
wall_ms = 100

[grants.kb]
collections = ["public"]
"#;

fn tiny_model() -> Vec<u8> {
    ModelWriter {
        name: "fuzz".into(),
        spec: FeatureSpec {
            buckets_log2: 10,
            char_ngram_max: 0,
            ..FeatureSpec::default()
        },
        dtype: DType::I8,
        heads: vec![HeadSpec {
            name: "category".into(),
            labels: vec!["a".into(), "b".into()],
            bias: vec![0.1, -0.1],
            temperature: 1.0,
        }],
        rows: (0..20)
            .map(|i| RowSpec {
                bucket: i * 7,
                idf: 1.0 + i as f32,
                weights: vec![i as f32 / 10.0, -(i as f32) / 10.0],
            })
            .collect(),
    }
    .to_bytes()
    .unwrap_or_else(|e| panic!("{e}"))
}

//! `deskhost plugin new`: a plugin project in Rust, Python or JavaScript against the WIT this
//! deskhost was built with (written into the project's `wit/deps/deskhost/`), with a narrowed
//! world, a manifest whose grants match that world, settings, fixtures and a build script
//! that fills in the component's sha256.

use crate::manifest::PolicyKind;
use std::path::{Path, PathBuf};

/// A plugin language.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// Rust with wit-bindgen (cargo, wasm32-wasip2).
    Rust,
    /// Python with componentize-py (PyPI).
    Python,
    /// JavaScript with componentize-js (npm).
    Js,
}

impl std::str::FromStr for Lang {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "rust" => Ok(Lang::Rust),
            "python" => Ok(Lang::Python),
            "js" | "javascript" => Ok(Lang::Js),
            other => Err(format!(
                "no plugin language \"{}\"; use rust, python or js",
                deskhost_protocol::sanitize::field(other)
            )),
        }
    }
}

/// Versions of the guest toolchains deskhost is tested with.
pub const WIT_BINDGEN: &str = "0.61.1";
/// componentize-py (PyPI).
pub const COMPONENTIZE_PY: &str = "0.25.1";
/// @bytecodealliance/componentize-js (npm).
pub const COMPONENTIZE_JS: &str = "0.23.0";
/// @bytecodealliance/jco (npm).
pub const JCO: &str = "1.35.0";
/// @bytecodealliance/preview2-shim (npm), which componentize-js imports.
pub const PREVIEW2_SHIM: &str = "0.25.0";

/// Why a project could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name cannot be a plugin id and WIT package name.
    #[error(
        "plugin name \"{0}\" is not valid: use lowercase words of letters and digits joined by '-', each starting with a letter (e.g. my-triage)"
    )]
    Name(String),
    /// The directory exists and is not empty.
    #[error("{0} exists and is not empty; choose another name or --dir")]
    Exists(PathBuf),
    /// Writing failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('-').all(|word| {
            word.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && word
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
}

const TICKET_WITH_LAWYER: &str = r#"{"id": "T-1", "version": 1, "subject": "Charged twice",
      "body": "You charged me twice. If this is not fixed by Friday my lawyer will call you.",
      "channel": null, "language": "en", "customer_id": null}"#;
const TRIAGE_ESCALATED: &str = r#"{
      "category": {"value": "billing", "confidence": 0.9, "evidence": []},
      "queue": {"value": "legal", "confidence": 1.0, "evidence": []},
      "priority": {"value": "Urgent", "confidence": 1.0, "evidence": []},
      "language": {"value": "en", "confidence": 0.9, "evidence": []},
      "sentiment": {"value": "Negative", "confidence": 0.7, "evidence": []},
      "extra_fields": [], "tags": ["legal"],
      "escalate": {"code": "legal-threat", "detail": "The customer mentions legal action", "evidence": []},
      "rationale": "example"
    }"#;

struct KindParts {
    uses: &'static str,
    export: &'static str,
    imports: &'static str,
    grants: &'static str,
    settings: &'static str,
    fixtures: Vec<(&'static str, String)>,
}

fn kind_parts(kind: PolicyKind) -> KindParts {
    match kind {
        PolicyKind::Triage => KindParts {
            uses: "ticket, triage-decision, plugin-error",
            export: "export triage: func(ticket: ticket) -> result<triage-decision, plugin-error>;",
            imports: "",
            grants: "[grants.ticket]\nfields = [\"language\"]\n",
            settings: r#"{
  "category": "how_to",
  "queue": "success",
  "escalate_words": ["lawyer", "legal action"]
}
"#,
            fixtures: vec![
                (
                    "escalates-on-a-word.json",
                    format!(
                        r#"{{
  "description": "A ticket that names a lawyer goes to a human, at least high",
  "kind": "triage",
  "input": {{"ticket": {TICKET_WITH_LAWYER}}},
  "expect": {{"escalate": "keyword", "priority_at_least": "high"}}
}}
"#
                    ),
                ),
                (
                    "plain-question.json",
                    r#"{
  "description": "A plain question stays with the team; the output passes the host's checks",
  "kind": "triage",
  "input": {"ticket": {"id": "T-2", "version": 1, "subject": "Export",
    "body": "How do I export my invoices?", "language": "en"}},
  "expect": {"escalate": "none"}
}
"#
                    .to_string(),
                ),
            ],
        },
        PolicyKind::Reply => KindParts {
            uses: "ticket, triage-decision, reply-proposal, plugin-error",
            export: "export reply: func(ticket: ticket, triage: triage-decision) -> result<reply-proposal, plugin-error>;",
            imports: "    import deskhost:plugin/kb@0.1.0;        // granted by [grants.kb]\n",
            grants: "[grants.kb]\ncollections = [\"public\"]\n\n[grants.ticket]\nfields = [\"language\"]\n",
            settings: "{\n  \"limit\": 3\n}\n",
            fixtures: vec![(
                "abstains-without-a-match.json",
                format!(
                    r#"{{
  "description": "Nothing in the knowledge base: abstain (the transcript answers the search)",
  "kind": "reply",
  "input": {{"ticket": {TICKET_WITH_LAWYER}, "triage": {TRIAGE_ESCALATED}}},
  "transcript": [
    {{"capability": "kb", "function": "search",
      "args": {{"query": "Charged twice", "language": "en", "limit": 3}}, "result": []}}
  ],
  "expect": {{"reply": "abstain"}}
}}
"#
                ),
            )],
        },
        PolicyKind::Escalation => KindParts {
            uses: "ticket, triage-decision, reply-proposal, escalation-summary, plugin-error",
            export: "export escalate: func(ticket: ticket, triage: triage-decision, reply: option<reply-proposal>) -> result<escalation-summary, plugin-error>;",
            imports: "",
            grants: "",
            settings: "{\n  \"next_step\": \"Read the ticket and contact the customer\"\n}\n",
            fixtures: vec![(
                "legal-threat.json",
                format!(
                    r#"{{
  "description": "An escalated ticket gets a packet that passes the host's checks",
  "kind": "escalation",
  "input": {{"ticket": {TICKET_WITH_LAWYER}, "triage": {TRIAGE_ESCALATED}, "reply": null}},
  "expect": {{}}
}}
"#
                ),
            )],
        },
    }
}

/// Writes a new plugin project `name` into `dir`; returns the files written.
pub fn new_plugin(
    dir: &Path,
    name: &str,
    lang: Lang,
    kind: PolicyKind,
) -> Result<Vec<PathBuf>, ScaffoldError> {
    if !valid_name(name) {
        return Err(ScaffoldError::Name(name.to_string()));
    }
    if dir.exists()
        && std::fs::read_dir(dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(ScaffoldError::Exists(dir.to_path_buf()));
    }
    let parts = kind_parts(kind);
    let krate = name.replace('-', "_");
    let (lang_name, source, code, build, build_note, limits) = match lang {
        Lang::Rust => (
            "Rust",
            "src/lib.rs",
            match kind {
                PolicyKind::Triage => include_str!("rust/triage.rs"),
                PolicyKind::Reply => include_str!("rust/reply.rs"),
                PolicyKind::Escalation => include_str!("rust/escalation.rs"),
            },
            include_str!("rust/build.sh"),
            "cargo build --target wasm32-wasip2",
            "fuel = 100_000_000\nwall_ms = 500\nmemory_mib = 16",
        ),
        Lang::Python => (
            "Python",
            "app.py",
            match kind {
                PolicyKind::Triage => include_str!("python/triage.py"),
                PolicyKind::Reply => include_str!("python/reply.py"),
                PolicyKind::Escalation => include_str!("python/escalation.py"),
            },
            include_str!("python/build.sh"),
            "componentize-py (installed into .venv if missing)",
            // CPython in Wasm: tens of millions of instructions and ~6 ms per call.
            "fuel = 2_000_000_000\nwall_ms = 2000\nmemory_mib = 128",
        ),
        Lang::Js => (
            "JavaScript",
            "policy.js",
            match kind {
                PolicyKind::Triage => include_str!("js/triage.js"),
                PolicyKind::Reply => include_str!("js/reply.js"),
                PolicyKind::Escalation => include_str!("js/escalation.js"),
            },
            include_str!("js/build.sh"),
            "componentize-js (npm install if missing)",
            // SpiderMonkey in Wasm: ~70 million instructions and ~6 ms per call.
            "fuel = 2_000_000_000\nwall_ms = 2000\nmemory_mib = 128",
        ),
    };
    let fill = |text: &str| {
        text.replace("__NAME__", name)
            .replace("__CRATE__", &krate)
            .replace("__KIND__", kind.as_str())
            .replace("__LANG__", lang_name)
            .replace("__SOURCE__", source)
            .replace("__BUILD_NOTE__", build_note)
            .replace("__IMPORTS__", parts.imports.trim_end_matches('\n'))
            .replace("__USES__", parts.uses)
            .replace("__EXPORT__", parts.export)
            .replace("__WIT_BINDGEN__", WIT_BINDGEN)
            .replace("__COMPONENTIZE_PY__", COMPONENTIZE_PY)
            .replace("__COMPONENTIZE_JS__", COMPONENTIZE_JS)
            .replace("__JCO__", JCO)
            .replace("__PREVIEW2_SHIM__", PREVIEW2_SHIM)
    };
    let manifest = format!(
        "id = \"{name}\"\nversion = \"0.1.0\"\nkind = \"{kind}\"\nwit = \"{wit}\"\n\
         description = \"A {kind} policy in {lang_name}\"\ncomponent = \"{krate}.wasm\"\n\
         # ./build.sh writes the component's digest here; loading refuses any other file.\n\
         sha256 = \"run ./build.sh\"\nconfig = \"settings.json\"\n\n\
         [limits]\n{limits}\nhost_calls = 8\noutput_kib = 64\n{sep}{grants}",
        kind = kind.as_str(),
        wit = crate::manifest::WIT_VERSION,
        sep = if parts.grants.is_empty() { "" } else { "\n" },
        grants = parts.grants,
    );
    let build_script = format!(
        "{}{}{}",
        fill(include_str!("build-head.sh")),
        fill(build),
        fill(include_str!("build-tail.sh"))
    );
    let mut files: Vec<(String, String)> = vec![
        ("README.md".into(), fill(include_str!("README.md"))),
        ("plugin.toml".into(), manifest),
        ("settings.json".into(), parts.settings.to_string()),
        ("build.sh".into(), build_script),
        ("wit/world.wit".into(), fill(include_str!("world.wit"))),
        (
            "wit/deps/deskhost/types.wit".into(),
            include_str!("../../../../wit/types.wit").into(),
        ),
        (
            "wit/deps/deskhost/capabilities.wit".into(),
            include_str!("../../../../wit/capabilities.wit").into(),
        ),
        (source.into(), fill(code)),
        (
            ".gitignore".into(),
            "/target\n/node_modules\n/.venv\n*.wasm\n".into(),
        ),
    ];
    match lang {
        Lang::Rust => files.push(("Cargo.toml".into(), fill(include_str!("rust/Cargo.toml")))),
        Lang::Js => files.push(("package.json".into(), fill(include_str!("js/package.json")))),
        Lang::Python => {}
    }
    for (file, text) in parts.fixtures {
        files.push((format!("fixtures/{file}"), text));
    }
    let mut written = Vec::new();
    for (rel, text) in files {
        let path = dir.join(&rel);
        let io = |source| ScaffoldError::Io {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(&path, text).map_err(io)?;
        #[cfg(unix)]
        if rel == "build.sh" {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).map_err(io)?;
        }
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plugin_ids_and_wit_package_names() {
        for good in ["my-triage", "triage2", "a-b2-c"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "My", "2fast", "a--b", "a-2b", "a_b", "-a", "a-"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn every_placeholder_is_filled_and_fixtures_parse() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        for lang in [Lang::Rust, Lang::Python, Lang::Js] {
            for kind in PolicyKind::ALL {
                let dir = tmp.path().join(format!("{lang:?}-{}", kind.as_str()));
                let files = new_plugin(&dir, "my-policy", lang, kind)
                    .unwrap_or_else(|e| panic!("{lang:?} {kind:?}: {e}"));
                for f in &files {
                    let text = std::fs::read_to_string(f).unwrap_or_default();
                    assert!(!text.contains("__"), "{} keeps a placeholder", f.display());
                    if f.extension().is_some_and(|e| e == "json") {
                        let v: serde_json::Value = serde_json::from_str(&text)
                            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
                        if f.parent().is_some_and(|p| p.ends_with("fixtures")) {
                            serde_json::from_value::<crate::plugin_test::Fixture>(v)
                                .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
                        }
                    }
                }
                let manifest = dir.join("plugin.toml");
                let text = std::fs::read_to_string(&manifest).unwrap_or_default();
                let parsed: toml::Value =
                    toml::from_str(&text).unwrap_or_else(|e| panic!("{text}\n{e}"));
                assert_eq!(parsed["kind"].as_str(), Some(kind.as_str()));
                assert!(matches!(
                    new_plugin(&dir, "my-policy", lang, kind),
                    Err(ScaffoldError::Exists(_))
                ));
            }
        }
    }
}

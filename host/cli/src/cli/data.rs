//! `deskhost init`, `kb`, `crm`: a workspace and the data policies read.

use crate::*;

#[derive(Args)]
pub(crate) struct InitArgs {
    /// Directory to create.
    dir: PathBuf,
    /// Template workspace.
    #[arg(long, env = "DESKHOST_TEMPLATE", default_value = "examples/workspace")]
    from: PathBuf,
    /// Directory with the built plugin components (default: next to this binary's target
    /// directory, `wasm32-wasip2/plugin`).
    #[arg(long, env = "DESKHOST_PLUGIN_DIR")]
    plugins: Option<PathBuf>,
    /// Replace a non-empty directory.
    #[arg(long)]
    force: bool,
}

#[derive(Subcommand)]
pub(crate) enum KbCommand {
    /// Import articles (JSON Lines: id, title, body, language, collection) and reindex.
    Import {
        /// Articles file.
        file: PathBuf,
    },
    /// Rebuild the search index from the store.
    Reindex,
    /// Search as a plugin would.
    Search {
        /// Query text.
        query: String,
        /// Only this language.
        #[arg(long)]
        language: Option<String>,
        /// Collections to search.
        #[arg(long, default_value = "public")]
        collection: Vec<String>,
        /// Hits.
        #[arg(long, default_value_t = 5)]
        limit: usize,
    },
}

#[derive(Subcommand)]
pub(crate) enum CrmCommand {
    /// Import customers (JSON Lines). A line updates the fields it has (`null` clears one)
    /// and keeps the others; --replace makes each line the whole record.
    Import {
        /// Customers file.
        file: PathBuf,
        /// Each line replaces the stored record instead of updating its fields.
        #[arg(long)]
        replace: bool,
    },
}

pub(crate) fn init(args: InitArgs, json: bool) -> Result<ExitCode> {
    let components = args.plugins.unwrap_or_else(default_plugin_dir);
    let report = workspace::init(&args.dir, &args.from, &components, args.force)?;
    if json {
        print_json(&json!(report))?;
    } else {
        out!("created workspace {}", report.dir.display());
        for (manifest, digest) in &report.plugins {
            out!(
                "  installed {} (sha256 {})",
                manifest.display(),
                &digest[..12]
            );
        }
        out!(
            "next: deskhost -w {} kb import FILE, crm import FILE, train FILE, run FILE",
            report.dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads a JSON Lines file into `T`s; bad lines (not UTF-8, not JSON, not `T`, failing
/// `check`) are reported with their number and skipped, not fatal.
pub(crate) fn read_jsonl<T: serde::de::DeserializeOwned>(
    path: &Path,
    check: impl Fn(&T) -> Result<(), String>,
) -> Result<jsonl::Parsed<T>> {
    Ok(jsonl::read(path, check)?)
}

pub(crate) fn check_article(a: &ArticleRecord) -> Result<(), String> {
    records::check_id("id", &a.id)?;
    records::check_collection(&a.collection).map_err(|e| format!("article {}: {e}", a.id))?;
    if !deskhost_engine::pipeline::checks::is_language_tag(&a.language) {
        return Err(format!(
            "article {}: language \"{}\" is not a language tag such as en or pt-BR",
            a.id,
            deskhost_engine::sanitize::field(&a.language)
        ));
    }
    if a.body.trim().is_empty() || a.title.trim().is_empty() {
        return Err(format!(
            "article {}: title and body must not be empty",
            a.id
        ));
    }
    Ok(())
}

pub(crate) fn check_customer_line(
    line: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), String> {
    match line.get("id") {
        Some(serde_json::Value::String(id)) => records::check_id("id", id),
        _ => Err("`id` must be a string: the customer's CRM id".into()),
    }
}

pub(crate) fn count(outcomes: &[Upsert]) -> serde_json::Value {
    let n = |u: Upsert| outcomes.iter().filter(|&&o| o == u).count();
    json!({ "inserted": n(Upsert::Inserted), "updated": n(Upsert::Updated), "unchanged": n(Upsert::Unchanged) })
}

pub(crate) async fn kb(dir: &Path, cmd: KbCommand, json: bool) -> Result<ExitCode> {
    let ws = Workspace::open(dir).await?;
    match cmd {
        KbCommand::Import { file } => {
            let jsonl::Parsed {
                records: articles,
                rejected: bad,
            } = read_jsonl::<ArticleRecord>(&file, check_article)?;
            for b in &bad {
                note!("{b}");
            }
            let mut outcomes = Vec::new();
            for (_, a) in &articles {
                outcomes.push(ws.store.upsert_article(a).await?.0);
            }
            let kb = ws.reindex().await?;
            let counts = count(&outcomes);
            ws.audit(&[import_record(
                "kb-import",
                &file,
                json!({ "articles": counts, "rejected": bad.len(), "index_version": kb.version() }),
            )])
            .await?;
            if json {
                print_json(
                    &json!({ "articles": counts, "rejected": bad.len(), "index_version": kb.version(), "total": kb.len() }),
                )?;
            } else {
                out!(
                    "kb import: {counts}, {} rejected; index {} with {} articles",
                    bad.len(),
                    kb.version(),
                    kb.len()
                );
            }
            Ok(if bad.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
        KbCommand::Reindex => {
            let kb = ws.reindex().await?;
            out!(
                "reindexed {} articles, index version {}",
                kb.len(),
                kb.version()
            );
            Ok(ExitCode::SUCCESS)
        }
        KbCommand::Search {
            query,
            language,
            collection,
            limit,
        } => {
            let kb = ws.kb().await?;
            let hits = kb.search(&query, language.as_deref(), &collection, limit)?;
            if json {
                print_json(&json!(hits))?;
            } else {
                for h in hits {
                    out!(
                        "{:>7.3}  {}  [{}] {}\n         {}",
                        h.score,
                        h.article_id,
                        h.language,
                        h.title,
                        h.snippet
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub(crate) async fn crm_import(
    dir: &Path,
    file: &Path,
    replace: bool,
    json: bool,
) -> Result<ExitCode> {
    let ws = Workspace::open(dir).await?;
    let jsonl::Parsed {
        records: lines,
        rejected: mut bad,
    } = read_jsonl::<serde_json::Map<String, serde_json::Value>>(file, check_customer_line)?;
    let mut outcomes = Vec::new();
    for (number, line) in &lines {
        match ws.store.import_customer(line, replace).await {
            Ok((outcome, _)) => outcomes.push(outcome),
            Err(deskhost_engine::store::StoreError::Invalid { what, detail }) => bad.push(format!(
                "{}:{number}: {what}: {detail}; line skipped",
                file.display()
            )),
            Err(e) => return Err(e.into()),
        }
    }
    for b in &bad {
        note!("{b}");
    }
    let counts = count(&outcomes);
    ws.audit(&[import_record(
        "crm-import",
        file,
        json!({ "customers": counts, "rejected": bad.len() }),
    )])
    .await?;
    if json {
        print_json(&json!({ "customers": counts, "rejected": bad.len() }))?;
    } else {
        out!("crm import: {counts}, {} rejected", bad.len());
    }
    Ok(if bad.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

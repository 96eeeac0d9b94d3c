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
    show(&report, json)?;
    Ok(ExitCode::SUCCESS)
}

impl Render for workspace::InitReport {
    fn human(&self, out: &mut Lines<'_>) -> std::io::Result<()> {
        say!(out, "created workspace {}", self.dir.display());
        for (manifest, digest) in &self.plugins {
            say!(
                out,
                "  installed {} (sha256 {})",
                manifest.display(),
                digest.get(..12).unwrap_or(digest)
            );
        }
        if self.shared_store {
            say!(
                out,
                "  store: {} (a shared database: init neither empties nor creates it; workspaces on other machines that name it share its tickets, plugins' slots and audit chain)",
                self.store
            );
        } else {
            say!(out, "  store: {}", self.store);
        }
        say!(
            out,
            "next: deskhost -w {} kb import FILE, crm import FILE, train FILE, run FILE",
            self.dir.display()
        );
        Ok(())
    }
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

/// What an import did to the stored records.
#[derive(serde::Serialize)]
pub(crate) struct Counts {
    inserted: usize,
    updated: usize,
    unchanged: usize,
}

impl Counts {
    pub(crate) fn of(outcomes: &[Upsert]) -> Self {
        let n = |u: Upsert| outcomes.iter().filter(|&&o| o == u).count();
        Counts {
            inserted: n(Upsert::Inserted),
            updated: n(Upsert::Updated),
            unchanged: n(Upsert::Unchanged),
        }
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} inserted, {} updated, {} unchanged",
            self.inserted, self.updated, self.unchanged
        )
    }
}

/// `kb import`'s result; also the payload of its audit record (without `total`).
#[derive(serde::Serialize)]
pub(crate) struct KbImported {
    articles: Counts,
    rejected: usize,
    index_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<usize>,
}

impl Render for KbImported {
    fn human(&self, out: &mut Lines<'_>) -> std::io::Result<()> {
        say!(
            out,
            "kb import: {}, {} rejected; index {} with {} articles",
            self.articles,
            self.rejected,
            self.index_version,
            self.total.unwrap_or(0)
        );
        Ok(())
    }
}

/// `crm import`'s result and the payload of its audit record.
#[derive(serde::Serialize)]
pub(crate) struct CrmImported {
    customers: Counts,
    rejected: usize,
}

impl Render for CrmImported {
    fn human(&self, out: &mut Lines<'_>) -> std::io::Result<()> {
        say!(
            out,
            "crm import: {}, {} rejected",
            self.customers,
            self.rejected
        );
        Ok(())
    }
}

/// `kb search`: the hits as a plugin would get them.
#[derive(serde::Serialize)]
#[serde(transparent)]
pub(crate) struct Hits(Vec<deskhost_engine::kb::KbHitRecord>);

impl Render for Hits {
    fn human(&self, out: &mut Lines<'_>) -> std::io::Result<()> {
        for h in &self.0 {
            say!(
                out,
                "{:>7.3}  {}  [{}] {}\n         {}",
                h.score,
                h.article_id,
                h.language,
                h.title,
                h.snippet
            );
        }
        Ok(())
    }
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
            let mut imported = KbImported {
                articles: Counts::of(&outcomes),
                rejected: bad.len(),
                index_version: kb.version().to_string(),
                total: None,
            };
            ws.audit(&[import_record("kb-import", &file, &imported)?])
                .await?;
            imported.total = Some(kb.len());
            show(&imported, json)?;
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
            show(&Hits(hits), json)?;
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
    let imported = CrmImported {
        customers: Counts::of(&outcomes),
        rejected: bad.len(),
    };
    ws.audit(&[import_record("crm-import", file, &imported)?])
        .await?;
    show(&imported, json)?;
    Ok(if bad.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

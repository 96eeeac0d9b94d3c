//! `deskhost audit`: verify, checkpoints, export.

use crate::*;

#[derive(Subcommand)]
pub(crate) enum AuditCommand {
    /// Check the hash chain, every decision against its digests, and the signed
    /// checkpoints; exits non-zero and names the first problem.
    Verify {
        /// Checkpoints kept outside the database (a checkpoint log, `audit checkpoint`
        /// output or an export); a chain rebuilt after any of them is detected.
        #[arg(long)]
        checkpoint: Vec<PathBuf>,
        /// The public key checkpoints must verify with (default: [audit] in deskhost.toml).
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Sign a checkpoint of the chain now and print it (keep a copy elsewhere).
    Checkpoint {
        /// Also append it to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Stream the audit records and checkpoints as JSON Lines (for another system).
    Export {
        /// Write here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// First record.
        #[arg(long, default_value_t = 1)]
        from: i64,
    },
    /// Check an export on its own (e.g. on another machine): the chain and its checkpoints.
    VerifyExport {
        /// The file `audit export` wrote.
        file: PathBuf,
        /// The public key checkpoints must verify with.
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Create an ed25519 signing key for checkpoints (never overwrites); prints its public
    /// key. Keep it outside the workspace and name it in [audit] signing_key.
    Keygen {
        /// Where to write the key.
        path: PathBuf,
    },
}

pub(crate) async fn audit_command(dir: &Path, cmd: AuditCommand, json: bool) -> Result<ExitCode> {
    if let AuditCommand::Keygen { path } = &cmd {
        let public = audit::checkpoint::keygen(path)?;
        let text = audit::checkpoint::public_key_text(&public);
        show(
            &KeyCreated {
                path: path.clone(),
                public_key: text,
            },
            json,
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    if let AuditCommand::VerifyExport { file, public_key } = &cmd {
        let key = public_key
            .as_deref()
            .map(audit::checkpoint::parse_public_key)
            .transpose()?;
        let report = audit::verify_export(file, key.as_ref()).map_err(anyhow::Error::msg)?;
        show(&report, json)?;
        if let Some(problem) = &report.problem {
            note!("export BROKEN: {problem}");
            return Ok(ExitCode::FAILURE);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let ws = Workspace::open(dir).await?;
    match cmd {
        AuditCommand::Keygen { .. } | AuditCommand::VerifyExport { .. } => {
            bail!("internal: handled above")
        }
        AuditCommand::Verify {
            checkpoint,
            public_key,
        } => {
            let key = match &public_key {
                Some(text) => Some(audit::checkpoint::parse_public_key(text)?),
                None => ws.audit_public_key()?,
            };
            let mut external = Vec::new();
            for file in &checkpoint {
                external.extend(audit::read_checkpoints(file).map_err(anyhow::Error::msg)?);
            }
            if !external.is_empty() && key.is_none() {
                bail!(
                    "checkpoints can only be checked against a trusted public key: pass --public-key ed25519:... or set [audit] public_key or signing_key in deskhost.toml"
                );
            }
            let expect = ws
                .store
                .checkpointer()
                .map(|_| ws.config.audit.checkpoint_every_records);
            let report =
                audit::verify_all(ws.store.pool(), key.as_ref(), &external, expect).await?;
            show(&report, json)?;
            if let Some(problem) = report.first_problem() {
                note!("{problem}");
                let more = report.checkpoints.problems.len().saturating_sub(1)
                    + report.decisions.as_ref().map_or(0, |d| d.problems.len());
                if more > 0 && report.chain.broken.is_none() {
                    for p in report
                        .checkpoints
                        .problems
                        .iter()
                        .skip(1)
                        .chain(report.decisions.iter().flat_map(|d| d.problems.iter()))
                        .take(20)
                    {
                        note!("  also: {p}");
                    }
                }
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Checkpoint { out } => {
            let Some(checkpointer) = ws.store.checkpointer() else {
                bail!(
                    "no signing key: create one with `deskhost audit keygen PATH` (outside the workspace) and set [audit] signing_key = \"PATH\" in {}",
                    ws.config_path().display()
                );
            };
            let cp = audit::sign_now(ws.store.writer(), checkpointer.key()).await?;
            ws.store.published(Some(cp.clone()));
            if let Some(path) = &out {
                audit::checkpoint::append_to_log(path, &cp)?;
            }
            show(&cp, json)?;
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Export { out, from } => {
            let written = match &out {
                Some(path) => {
                    let file = std::fs::File::create(path)
                        .with_context(|| format!("cannot create {}", path.display()))?;
                    let mut w = std::io::BufWriter::new(file);
                    audit::export(ws.store.pool(), from, &mut w).await?
                }
                None => {
                    let mut w = std::io::BufWriter::new(std::io::stdout().lock());
                    audit::export(ws.store.pool(), from, &mut w).await?
                }
            };
            if let Some(path) = &out {
                note!("exported {written} records to {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `audit keygen`'s result.
#[derive(serde::Serialize)]
pub(crate) struct KeyCreated {
    path: PathBuf,
    public_key: String,
}

impl Render for KeyCreated {
    fn human(&self, out: &mut Lines<'_>) -> std::io::Result<()> {
        let path = self.path.display();
        say!(
            out,
            "wrote {path} (mode 600); public key {}",
            self.public_key
        );
        say!(
            out,
            "add to deskhost.toml:\n[audit]\nsigning_key = \"{path}\""
        );
        Ok(())
    }
}

/// `audit verify-export`: the problem, if any, goes to stderr; this is the good news.
impl Render for audit::ExportReport {
    fn human(&self, out: &mut Lines<'_>) -> std::io::Result<()> {
        if self.problem.is_none() {
            say!(
                out,
                "export intact: {} records chain, {} signed checkpoints match",
                self.records,
                self.checkpoints
            );
        }
        Ok(())
    }
}

/// `audit verify`: problems go to stderr; this is what was checked and found intact.
impl Render for audit::FullReport {
    fn human(&self, out: &mut Lines<'_>) -> std::io::Result<()> {
        if self.first_problem().is_some() {
            return Ok(());
        }
        say!(
            out,
            "audit chain intact: {} records, last seq {}",
            self.chain.records,
            self.chain.last_seq
        );
        if let Some(d) = &self.decisions {
            say!(
                out,
                "decisions intact: {} runs, {} ticket versions and {} ticket states match their audit records",
                d.runs,
                d.ticket_versions,
                d.ticket_states
            );
        }
        let c = &self.checkpoints;
        match (&c.public_key, c.stored + c.external) {
            (_, 0) => say!(
                out,
                "checkpoints: none (without signed checkpoints a rebuilt chain cannot be told apart; see `deskhost audit keygen`)"
            ),
            (None, n) => say!(
                out,
                "checkpoints: {n} not verified: no public key (set [audit] in deskhost.toml or pass --public-key)"
            ),
            (Some(k), _) => say!(
                out,
                "checkpoints: {} match the chain ({} stored, {} given; the last covers record {}), key {k}",
                c.matched,
                c.stored,
                c.external,
                c.last_seq.unwrap_or(0)
            ),
        }
        Ok(())
    }
}

/// `audit checkpoint`: one line, the form a checkpoint log keeps.
impl Render for audit::checkpoint::Checkpoint {
    fn human(&self, out: &mut Lines<'_>) -> std::io::Result<()> {
        say!(out, "{}", serde_json::to_string(self)?);
        Ok(())
    }
}

//! `deskhost review`: the queue of what waits for a person, and acting on it.

use crate::*;
use deskhost_engine::review::{self as review_case, ReviewQuery};
use deskhost_protocol::review::{ReviewActed, ReviewAction, ReviewEdits};

#[derive(Subcommand)]
pub(crate) enum ReviewCommand {
    /// List review items, riskiest first, then by priority, then oldest.
    List {
        /// Which items.
        #[arg(long, value_enum, default_value = "open")]
        status: StatusFilter,
        /// Only items with this reason (low-confidence, escalation, risk-category, …).
        #[arg(long)]
        reason: Option<String>,
        /// Only items whose triage proposed this queue.
        #[arg(long)]
        queue: Option<String>,
        /// Only items of runs this plugin (id@version) took part in.
        #[arg(long)]
        plugin: Option<String>,
        /// Only items assigned to this reviewer.
        #[arg(long)]
        assignee: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 0)]
        limit: usize,
    },
    /// One item: the ticket, each proposal with its confidence and evidence, the cited
    /// articles, the gate's reasons, held effects and faults.
    Show {
        /// The review item.
        id: String,
    },
    /// Reviewers' verdicts as figures: kept-unchanged share per plugin version and field,
    /// reply and escalation outcomes, automation rate, backlog.
    Report,
    /// The approved items as labeled tickets (JSON Lines, the format `train` and `eval`
    /// read).
    Labels {
        /// Write here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Approve: apply the held effects (with any edits) and queue the reply for delivery.
    Approve {
        /// The review item.
        id: String,
        /// Category instead of the proposed one.
        #[arg(long)]
        category: Option<String>,
        /// Queue instead of the proposed one.
        #[arg(long)]
        queue: Option<String>,
        /// Priority instead of the proposed one.
        #[arg(long)]
        priority: Option<String>,
        /// Language instead of the proposed one.
        #[arg(long)]
        language: Option<String>,
        /// A file with the reply to send instead of the drafted one.
        #[arg(long)]
        reply_file: Option<PathBuf>,
        /// Who approves (default: $USER).
        #[arg(long = "as")]
        actor: Option<String>,
    },
    /// Reject: apply nothing; the ticket needs a person.
    Reject {
        /// The review item.
        id: String,
        /// Why.
        #[arg(long)]
        reason: String,
        /// Who rejects (default: $USER).
        #[arg(long = "as")]
        actor: Option<String>,
    },
    /// Assign the item to a reviewer.
    Assign {
        /// The review item.
        id: String,
        /// The reviewer.
        #[arg(long)]
        to: String,
        /// Who assigns (default: $USER).
        #[arg(long = "as")]
        actor: Option<String>,
    },
}

/// Review items by status.
#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum StatusFilter {
    /// Waiting for a person.
    Open,
    /// Approved.
    Approved,
    /// Rejected.
    Rejected,
    /// Every item.
    All,
}

/// The operator acting from the command line: `cli:NAME`, so the audit log tells it from an
/// API token's holder. `--as NAME` is checked like a token's name; `$USER` is used only when
/// it would pass that check.
pub(crate) fn operator(actor: Option<String>) -> Result<String> {
    let name = match actor {
        Some(name) => {
            deskhost_protocol::records::check_id("--as", &name).map_err(anyhow::Error::msg)?;
            name
        }
        None => std::env::var("USER")
            .ok()
            .filter(|n| deskhost_protocol::records::check_id("USER", n).is_ok())
            .unwrap_or_else(|| "operator".into()),
    };
    Ok(format!("cli:{name}"))
}

pub(crate) async fn review(dir: &Path, cmd: ReviewCommand, json: bool) -> Result<ExitCode> {
    let ws = Workspace::open(dir).await?;
    let (id, actor, action) = match cmd {
        ReviewCommand::List {
            status,
            reason,
            queue,
            plugin,
            assignee,
            limit,
        } => {
            let query = ReviewQuery {
                status: match status {
                    StatusFilter::All => None,
                    StatusFilter::Open => Some(ReviewStatus::Open),
                    StatusFilter::Approved => Some(ReviewStatus::Approved),
                    StatusFilter::Rejected => Some(ReviewStatus::Rejected),
                },
                reason,
                queue,
                plugin,
                assignee,
                limit,
            };
            let items = ws.store.review_items(&query).await?;
            show(
                &ReviewList {
                    filter: query.status.map_or("all", ReviewStatus::as_str),
                    items,
                },
                json,
            )?;
            return Ok(ExitCode::SUCCESS);
        }
        ReviewCommand::Show { id } => {
            let Some(detail) = review_case::detail(&ws, &id).await? else {
                bail!(
                    "no review item {}; `deskhost review list` shows them",
                    deskhost_engine::sanitize::field(&id)
                );
            };
            show(&detail, json)?;
            return Ok(ExitCode::SUCCESS);
        }
        ReviewCommand::Report => {
            show(&ws.store.review_report().await?, json)?;
            return Ok(ExitCode::SUCCESS);
        }
        ReviewCommand::Labels { out } => {
            let labels = ws.store.review_labels().await?;
            let text = jsonl_text(&labels)?;
            match out {
                Some(path) => {
                    std::fs::write(&path, text)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    note!(
                        "{} labeled tickets written to {}",
                        labels.len(),
                        path.display()
                    );
                }
                None => std::io::stdout().write_all(text.as_bytes())?,
            }
            return Ok(ExitCode::SUCCESS);
        }
        ReviewCommand::Approve {
            id,
            category,
            queue,
            priority,
            language,
            reply_file,
            actor,
        } => {
            let reply = reply_file
                .map(|f| {
                    std::fs::read_to_string(&f)
                        .with_context(|| format!("cannot read the reply in {}", f.display()))
                })
                .transpose()?;
            let edits = ReviewEdits {
                category,
                queue,
                priority,
                language,
                reply,
            };
            (id, actor, ReviewAction::Approve { edits })
        }
        ReviewCommand::Reject { id, reason, actor } => (id, actor, ReviewAction::Reject { reason }),
        ReviewCommand::Assign { id, to, actor } => (id, actor, ReviewAction::Assign { to }),
    };
    let acted = review_case::act(&ws, &id, &operator(actor)?, &action).await?;
    show(&acted, json)?;
    Ok(ExitCode::SUCCESS)
}

impl Render for ReviewActed {
    fn human(&self, out: &mut Lines<'_>) -> std::io::Result<()> {
        say!(
            out,
            "{} {} by {}: item {}, ticket {}",
            self.action,
            self.status.as_str(),
            self.actor,
            self.item_id,
            self.ticket_id
        );
        for e in &self.applied {
            say!(out, "  applied {}", serde_json::to_string(e)?);
        }
        if let Some(m) = &self.outbound_message {
            say!(out, "  reply queued for delivery as {m}");
        }
        Ok(())
    }
}

/// `review list`: the items; the filter only labels the human text.
pub(crate) struct ReviewList {
    filter: &'static str,
    items: Vec<deskhost_protocol::run::ReviewItem>,
}

impl serde::Serialize for ReviewList {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.items.serialize(s)
    }
}

impl Render for ReviewList {
    fn human(&self, out: &mut Lines<'_>) -> std::io::Result<()> {
        say!(out, "{} review item(s) ({})", self.items.len(), self.filter);
        for item in &self.items {
            let codes: Vec<&str> = item.reasons.iter().map(|r| r.code.as_str()).collect();
            say!(
                out,
                "{}  {:<8} v{}  {}{}",
                item.id,
                deskhost_engine::sanitize::field(&item.ticket_id),
                item.ticket_version,
                codes.join(", "),
                item.assignee
                    .as_deref()
                    .map(|a| format!("  → {}", deskhost_engine::sanitize::field(a)))
                    .unwrap_or_default()
            );
            for r in &item.reasons {
                say!(out, "    - {}", deskhost_engine::sanitize::field(&r.detail));
            }
        }
        Ok(())
    }
}

/// Labeled tickets as JSON Lines.
fn jsonl_text(labels: &[deskhost_protocol::review::ReviewLabel]) -> Result<String> {
    let mut text = String::new();
    for l in labels {
        text.push_str(&serde_json::to_string(l)?);
        text.push('\n');
    }
    Ok(text)
}

/// Writes the reviewers' labels to `reports/review-labels.jsonl` in the workspace (for
/// `train --from-reviews` and `eval --from-reviews`); returns the file and how many.
pub(crate) async fn labels_file(ws: &Workspace) -> Result<(PathBuf, usize)> {
    let labels = ws.store.review_labels().await?;
    let dir = ws.dir.join("reports");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("review-labels.jsonl");
    std::fs::write(&path, jsonl_text(&labels)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok((path, labels.len()))
}

impl Render for deskhost_protocol::review::ReviewReport {
    fn human(&self, out: &mut Lines<'_>) -> std::io::Result<()> {
        say!(
            out,
            "automation: {} of {} runs applied without review ({:.1}%)",
            self.automation.without_review,
            self.automation.runs,
            self.automation.rate * 100.0
        );
        say!(
            out,
            "backlog: {} open{}",
            self.backlog.open,
            self.backlog
                .oldest
                .as_deref()
                .map(|o| format!(", oldest since {o}"))
                .unwrap_or_default()
        );
        if self.fields.is_empty() {
            say!(out, "no verdicts yet: approve or reject items to measure");
        }
        for f in &self.fields {
            say!(
                out,
                "  {:<28} {:<9} kept unchanged {:>5.1}% ({}/{})",
                f.plugin,
                f.field,
                f.rate * 100.0,
                f.unchanged,
                f.decided
            );
        }
        for f in &self.at_close {
            say!(
                out,
                "  {:<28} {:<9} unchanged at close {:>5.1}% ({}/{}, help desk)",
                f.plugin,
                f.field,
                f.rate * 100.0,
                f.unchanged,
                f.decided
            );
        }
        for (what, list) in [("reply", &self.replies), ("escalation", &self.escalations)] {
            for o in list {
                say!(
                    out,
                    "  {:<28} {what}: {} accepted, {} edited, {} rejected",
                    o.plugin,
                    o.accepted,
                    o.edited,
                    o.rejected
                );
            }
        }
        Ok(())
    }
}

impl Render for deskhost_protocol::api::ReviewDetail {
    fn human(&self, out: &mut Lines<'_>) -> std::io::Result<()> {
        use deskhost_protocol::proposal::ReplyProposal;
        let item = &self.item;
        say!(
            out,
            "{}  ticket {} v{}  {}{}",
            item.id,
            item.ticket_id,
            item.ticket_version,
            item.status.as_str(),
            item.decided_by
                .as_deref()
                .map(|d| format!(" by {d}"))
                .unwrap_or_default()
        );
        if let Some(t) = &self.ticket {
            say!(out, "subject: {}", t.subject);
            for line in t.body.lines().take(40) {
                say!(out, "  | {line}");
            }
        }
        say!(out, "why a person:");
        for r in &item.reasons {
            say!(out, "  - {}: {}", r.code.as_str(), r.detail);
        }
        if let Some(t) = &item.payload.triage {
            say!(
                out,
                "triage: category {} ({:.2}), queue {} ({:.2}), priority {} ({:.2}), language {} ({:.2})",
                t.category.value,
                t.category.confidence,
                t.queue.value,
                t.queue.confidence,
                t.priority.value.as_str(),
                t.priority.confidence,
                t.language.value,
                t.language.confidence
            );
            for e in t.category.evidence.iter().take(3) {
                say!(out, "  evidence: {} \"{}\"", e.reference, e.quote);
            }
        }
        match &item.payload.reply {
            Some(ReplyProposal::Draft(d)) => {
                say!(out, "reply draft ({}, {:.2}):", d.language, d.confidence);
                for line in d.body.lines() {
                    say!(out, "  > {line}");
                }
                for c in &d.citations {
                    let title = self
                        .articles
                        .iter()
                        .find(|a| a.id == c.article_id)
                        .map_or("(article gone)", |a| a.title.as_str());
                    say!(out, "  cites {} {title}: \"{}\"", c.article_id, c.quote);
                }
            }
            Some(ReplyProposal::Abstain(a)) => {
                say!(out, "reply: none ({}: {})", a.reason, a.detail)
            }
            None => {}
        }
        if let Some(e) = &item.payload.escalation {
            say!(out, "escalation: {} ({})", e.headline, e.reason);
        }
        for e in &item.payload.held_effects {
            say!(out, "held: {}", serde_json::to_string(e)?);
        }
        for f in &item.payload.faults {
            say!(out, "fault in {}: {}", f.stage, f.fault.kind.as_str());
        }
        Ok(())
    }
}

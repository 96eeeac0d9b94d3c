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
/// API token's holder.
fn operator(actor: Option<String>) -> String {
    let name = actor
        .or_else(|| std::env::var("USER").ok())
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| "operator".into());
    format!("cli:{name}")
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
    let acted = review_case::act(&ws, &id, &operator(actor), &action).await?;
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

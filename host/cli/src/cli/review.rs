//! `deskhost review`: what waits for a person.

use crate::*;

#[derive(Subcommand)]
pub(crate) enum ReviewCommand {
    /// List review items.
    List {
        /// Which items.
        #[arg(long, value_enum, default_value = "open")]
        status: StatusFilter,
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

pub(crate) async fn review_list(dir: &Path, status: StatusFilter, json: bool) -> Result<ExitCode> {
    let ws = Workspace::open(dir).await?;
    let filter = match status {
        StatusFilter::All => None,
        StatusFilter::Open => Some(ReviewStatus::Open),
        StatusFilter::Approved => Some(ReviewStatus::Approved),
        StatusFilter::Rejected => Some(ReviewStatus::Rejected),
    };
    let items = ws.store.review_items(filter).await?;
    show(
        &ReviewList {
            filter: filter.map_or("all", ReviewStatus::as_str),
            items,
        },
        json,
    )?;
    Ok(ExitCode::SUCCESS)
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
                "{}  {:<8} v{}  {}",
                item.id,
                deskhost_engine::sanitize::field(&item.ticket_id),
                item.ticket_version,
                codes.join(", ")
            );
            for r in &item.reasons {
                say!(out, "    - {}", deskhost_engine::sanitize::field(&r.detail));
            }
        }
        Ok(())
    }
}

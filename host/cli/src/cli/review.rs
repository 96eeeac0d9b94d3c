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
    if json {
        print_json(&json!(items))?;
        return Ok(ExitCode::SUCCESS);
    }
    out!(
        "{} review item(s) ({})",
        items.len(),
        filter.map_or("all", ReviewStatus::as_str)
    );
    for item in &items {
        let codes: Vec<&str> = item.reasons.iter().map(|r| r.code.as_str()).collect();
        out!(
            "{}  {:<8} v{}  {}",
            item.id,
            deskhost_engine::sanitize::field(&item.ticket_id),
            item.ticket_version,
            codes.join(", ")
        );
        for r in &item.reasons {
            out!("    - {}", deskhost_engine::sanitize::field(&r.detail));
        }
    }
    Ok(ExitCode::SUCCESS)
}

//! `deskhost token`: API tokens for `deskhost serve` (shown once, stored hashed).

use crate::*;
use deskhost_protocol::review::{Role, TokenInfo};

#[derive(Subcommand)]
pub(crate) enum TokenCommand {
    /// Create a token and print its secret (once; only its hash is stored).
    Create {
        /// Who or what holds it (the identity audited for its actions).
        #[arg(long)]
        name: String,
        /// ingest (send tickets), reviewer (read and act on the review queue) or admin.
        #[arg(long)]
        role: Role,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by id, or every live token of a name.
    Revoke {
        /// Token id (tok_…) or name.
        token: String,
    },
}

/// `token create`'s result: the only time the secret is shown.
#[derive(serde::Serialize)]
pub(crate) struct Created {
    #[serde(flatten)]
    info: TokenInfo,
    secret: String,
}

impl Render for Created {
    fn human(&self, out: &mut Lines<'_>) -> std::io::Result<()> {
        say!(
            out,
            "created token {} for {} ({}); its secret, shown only now:",
            self.info.id,
            self.info.name,
            self.info.role.as_str()
        );
        say!(out, "{}", self.secret);
        say!(
            out,
            "send it as `Authorization: Bearer <secret>`; revoke with `deskhost token revoke {}`",
            self.info.id
        );
        Ok(())
    }
}

/// `token list` and `token revoke`.
#[derive(serde::Serialize)]
#[serde(transparent)]
pub(crate) struct Tokens(Vec<TokenInfo>);

impl Render for Tokens {
    fn human(&self, out: &mut Lines<'_>) -> std::io::Result<()> {
        for t in &self.0 {
            say!(
                out,
                "{}  {:<9} {}  created {}{}",
                t.id,
                t.role.as_str(),
                t.name,
                t.created_at,
                t.revoked_at
                    .as_deref()
                    .map(|r| format!("  REVOKED {r}"))
                    .unwrap_or_default()
            );
        }
        Ok(())
    }
}

pub(crate) async fn token(dir: &Path, cmd: TokenCommand, json: bool) -> Result<ExitCode> {
    let ws = Workspace::open(dir).await?;
    match cmd {
        TokenCommand::Create { name, role } => {
            let (info, secret) = ws.store.create_token(&name, role).await?;
            show(&Created { info, secret }, json)?;
        }
        TokenCommand::List => show(&Tokens(ws.store.tokens().await?), json)?,
        TokenCommand::Revoke { token } => {
            let revoked = ws.store.revoke_token(&token).await?;
            if revoked.is_empty() {
                bail!("no live token with id or name {token:?}; `deskhost token list` shows them");
            }
            show(&Tokens(revoked), json)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

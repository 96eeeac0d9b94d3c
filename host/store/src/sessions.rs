//! Browser sessions of the review UI: opened with a live API token, kept as the SHA-256 of a
//! random cookie secret, each with its own CSRF secret. A session ends when it expires, when
//! its holder signs out, or at once when its token is revoked (every lookup joins the token).

use crate::store::{Col, Store, StoreError, q};
use deskhost_protocol::digest::now_rfc3339;
use deskhost_protocol::review::TokenInfo;
use sha2::{Digest, Sha256};

/// A live session: whose it is and the secret its forms must carry.
#[derive(Clone, Debug)]
pub struct UiSession {
    /// The token it was opened with (its name is the reviewer's identity).
    pub token: TokenInfo,
    /// The CSRF secret of this session's forms.
    pub csrf: String,
}

/// A session just opened: the cookie's secret (never stored) and the session.
#[derive(Clone, Debug)]
pub struct OpenedSession {
    /// The value of the session cookie.
    pub secret: String,
    /// The session.
    pub session: UiSession,
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn random_hex(what: &str) -> Result<String, StoreError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| StoreError::Invalid {
        what: what.into(),
        detail: format!("no randomness from the system: {e}"),
    })?;
    Ok(hex::encode(bytes))
}

fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

impl Store {
    /// Opens a session for `token` (a live one the caller has checked) lasting `ttl_seconds`;
    /// removes sessions that have expired.
    pub async fn open_session(
        &self,
        token: &TokenInfo,
        ttl_seconds: u64,
    ) -> Result<OpenedSession, StoreError> {
        let secret = random_hex("a session")?;
        let csrf = random_hex("a session")?;
        let now = unix_now();
        let expires = now.saturating_add(i64::try_from(ttl_seconds).unwrap_or(i64::MAX / 2));
        let mut tx = crate::db::begin_write(self.writer())
            .await
            .map_err(q("start opening a session"))?;
        sqlx::query("DELETE FROM ui_sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(q("remove expired sessions"))?;
        sqlx::query(
            "INSERT INTO ui_sessions (secret_sha256, token_id, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(digest(&secret))
        .bind(&token.id)
        .bind(&csrf)
        .bind(now_rfc3339())
        .bind(expires)
        .execute(&mut *tx)
        .await
        .map_err(q("store a session"))?;
        tx.commit().await.map_err(q("commit a session"))?;
        Ok(OpenedSession {
            secret,
            session: UiSession {
                token: token.clone(),
                csrf,
            },
        })
    }

    /// The live session whose cookie holds `secret`: not expired, its token not revoked.
    pub async fn session_for(&self, secret: &str) -> Result<Option<UiSession>, StoreError> {
        if secret.len() != 64 || !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT t.id, t.name, t.role, t.created_at, t.revoked_at, s.csrf
             FROM ui_sessions s JOIN api_tokens t ON t.id = s.token_id
             WHERE s.secret_sha256 = $1 AND s.expires_at > $2 AND t.revoked_at IS NULL",
        )
        .bind(digest(secret))
        .bind(unix_now())
        .fetch_optional(self.pool())
        .await
        .map_err(q("look up a session"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(Some(UiSession {
            token: crate::review::token_row(&row)?,
            csrf: row.col(5)?,
        }))
    }

    /// Ends the session whose cookie holds `secret` (nothing happens if there is none).
    pub async fn close_session(&self, secret: &str) -> Result<(), StoreError> {
        let mut tx = crate::db::begin_write(self.writer())
            .await
            .map_err(q("start closing a session"))?;
        sqlx::query("DELETE FROM ui_sessions WHERE secret_sha256 = $1")
            .bind(digest(secret))
            .execute(&mut *tx)
            .await
            .map_err(q("close a session"))?;
        tx.commit().await.map_err(q("commit closing a session"))
    }
}

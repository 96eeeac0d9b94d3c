-- Browser sessions of the review UI. A session is opened by signing in with an API token and
-- ends when it expires, when its holder signs out, or when the token is revoked. Only the
-- SHA-256 of the cookie's secret is kept; the CSRF secret is compared with every form.
CREATE TABLE ui_sessions (
    secret_sha256 TEXT PRIMARY KEY,
    token_id      TEXT NOT NULL REFERENCES api_tokens (id),
    csrf          TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    expires_at    INTEGER NOT NULL
);
CREATE INDEX ui_sessions_by_expiry ON ui_sessions (expires_at);

-- Browser sessions of the review UI (see migrations/sqlite/0006_ui_sessions.sql).
CREATE TABLE ui_sessions (
    secret_sha256 TEXT PRIMARY KEY,
    token_id      TEXT NOT NULL REFERENCES api_tokens (id),
    csrf          TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX ui_sessions_by_expiry ON ui_sessions (expires_at);

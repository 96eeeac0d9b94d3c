-- API tokens. Only the SHA-256 of each secret is kept; the secret is shown once.
CREATE TABLE api_tokens (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('ingest', 'reviewer', 'admin')),
    secret_sha256 TEXT NOT NULL UNIQUE,
    created_at    TEXT NOT NULL,
    revoked_at    TEXT
);

-- What reviewers did, in order. Append-only; each row's digest is in a `reviewed` audit
-- record. An item gets at most one verdict (approve or reject): the second is refused.
CREATE TABLE review_actions (
    seq         INTEGER PRIMARY KEY,
    item_id     TEXT NOT NULL,
    ticket_id   TEXT NOT NULL,
    action      TEXT NOT NULL CHECK (action IN ('approve', 'reject', 'assign')),
    actor       TEXT NOT NULL,
    detail_json TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX review_actions_by_item ON review_actions (item_id, seq);
CREATE UNIQUE INDEX review_actions_one_verdict ON review_actions (item_id)
    WHERE action IN ('approve', 'reject');
CREATE TRIGGER review_actions_no_update BEFORE UPDATE ON review_actions
BEGIN SELECT RAISE(ABORT, 'the review log is append-only'); END;
CREATE TRIGGER review_actions_no_delete BEFORE DELETE ON review_actions
BEGIN SELECT RAISE(ABORT, 'the review log is append-only'); END;

-- Approved replies waiting for the help desk (the connectors deliver them).
CREATE TABLE outbound_messages (
    id             TEXT PRIMARY KEY,
    ticket_id      TEXT NOT NULL,
    review_item    TEXT NOT NULL,
    body           TEXT NOT NULL,
    citations_json TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'dead')),
    created_at     TEXT NOT NULL
);
CREATE INDEX outbound_pending ON outbound_messages (state, created_at);

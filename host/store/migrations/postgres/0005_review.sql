-- API tokens, the review log and the outbound messages (see migrations/sqlite/0005_review.sql).
CREATE TABLE api_tokens (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('ingest', 'reviewer', 'admin')),
    secret_sha256 TEXT NOT NULL UNIQUE,
    created_at    TEXT NOT NULL,
    revoked_at    TEXT
);

CREATE TABLE review_actions (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
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
CREATE TRIGGER review_actions_no_change BEFORE UPDATE OR DELETE ON review_actions
    FOR EACH ROW EXECUTE FUNCTION deskhost_append_only('review log');
CREATE TRIGGER review_actions_no_truncate BEFORE TRUNCATE ON review_actions
    FOR EACH STATEMENT EXECUTE FUNCTION deskhost_append_only('review log');

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

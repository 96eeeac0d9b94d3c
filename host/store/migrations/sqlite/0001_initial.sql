-- Tickets: every content version is kept.
CREATE TABLE tickets (
    id            TEXT    NOT NULL,
    version       INTEGER NOT NULL,
    content_hash  TEXT    NOT NULL,
    input_json    TEXT    NOT NULL,
    customer_id   TEXT,
    ingested_at   TEXT    NOT NULL,
    PRIMARY KEY (id, version)
);
CREATE INDEX tickets_by_customer ON tickets (customer_id, id);

-- The help desk's current view of each ticket: effects applied by the gate land here.
CREATE TABLE ticket_state (
    id             TEXT PRIMARY KEY,
    latest_version INTEGER NOT NULL,
    status         TEXT    NOT NULL,
    category       TEXT,
    queue          TEXT,
    priority       TEXT,
    language       TEXT,
    tags_json      TEXT    NOT NULL DEFAULT '[]',
    created_at     TEXT    NOT NULL,
    updated_at     TEXT    NOT NULL
);

-- Durable work queue: a ticket version is decided exactly once (state moves to done in the
-- same transaction that stores its run, effects and review item).
CREATE TABLE work_queue (
    ticket_id   TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('pending', 'done')),
    enqueued_at TEXT    NOT NULL,
    run_id      TEXT,
    PRIMARY KEY (ticket_id, version)
);

CREATE TABLE customers (
    id           TEXT PRIMARY KEY,
    version      INTEGER NOT NULL,
    content_hash TEXT    NOT NULL,
    record_json  TEXT    NOT NULL,
    updated_at   TEXT    NOT NULL
);

CREATE TABLE kb_articles (
    id           TEXT PRIMARY KEY,
    version      INTEGER NOT NULL,
    content_hash TEXT    NOT NULL,
    title        TEXT    NOT NULL,
    body         TEXT    NOT NULL,
    language     TEXT    NOT NULL,
    collection   TEXT    NOT NULL,
    updated_at   TEXT    NOT NULL
);

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- One row per decision run of a ticket version.
CREATE TABLE runs (
    run_id         TEXT PRIMARY KEY,
    ticket_id      TEXT    NOT NULL,
    ticket_version INTEGER NOT NULL,
    started_at     TEXT    NOT NULL,
    finished_at    TEXT    NOT NULL,
    outcome        TEXT    NOT NULL,
    inputs_json    TEXT    NOT NULL,
    result_json    TEXT    NOT NULL
);
CREATE INDEX runs_by_ticket ON runs (ticket_id, ticket_version);

-- Each policy stage of a run: proposal or fault, stats and the host-call transcript.
CREATE TABLE run_stages (
    run_id          TEXT NOT NULL,
    stage           TEXT NOT NULL,
    plugin          TEXT NOT NULL,
    digest          TEXT NOT NULL,
    outcome         TEXT NOT NULL,
    proposal_json   TEXT,
    fault_json      TEXT,
    stats_json      TEXT NOT NULL,
    transcript_json TEXT NOT NULL,
    PRIMARY KEY (run_id, stage)
);

CREATE TABLE effects (
    id         INTEGER PRIMARY KEY,
    run_id     TEXT NOT NULL,
    ticket_id  TEXT NOT NULL,
    kind       TEXT NOT NULL,
    value_json TEXT NOT NULL,
    applied_at TEXT NOT NULL
);

CREATE TABLE notes (
    id         INTEGER PRIMARY KEY,
    ticket_id  TEXT NOT NULL,
    run_id     TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE review_items (
    id             TEXT PRIMARY KEY,
    run_id         TEXT    NOT NULL,
    ticket_id      TEXT    NOT NULL,
    ticket_version INTEGER NOT NULL,
    status         TEXT    NOT NULL,
    reasons_json   TEXT    NOT NULL,
    payload_json   TEXT    NOT NULL,
    created_at     TEXT    NOT NULL
);
CREATE INDEX review_by_status ON review_items (status, created_at);

-- Hash-chained audit log. Append-only: updates and deletes are refused by triggers, and
-- `deskhost audit verify` detects rows changed or removed behind the triggers' back.
CREATE TABLE audit (
    seq         INTEGER PRIMARY KEY,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    run_id      TEXT,
    kind        TEXT NOT NULL,
    payload     TEXT NOT NULL
);
CREATE INDEX audit_by_run ON audit (run_id);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

-- The last record's seq and hash, so removing the tail is detected too.
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash TEXT    NOT NULL
);

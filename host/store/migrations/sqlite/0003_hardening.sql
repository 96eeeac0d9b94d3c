-- Every value ticket_state takes, in order. The audit record of the change (ingest or a
-- committed run) carries the row's digest, so `deskhost audit verify` finds a state, a
-- decision or a ticket changed behind deskhost's back even when the chain is intact.
CREATE TABLE ticket_state_log (
    seq            INTEGER PRIMARY KEY,
    ticket_id      TEXT    NOT NULL,
    run_id         TEXT,
    latest_version INTEGER NOT NULL,
    status         TEXT    NOT NULL,
    category       TEXT,
    queue          TEXT,
    priority       TEXT,
    language       TEXT,
    tags_json      TEXT    NOT NULL,
    created_at     TEXT    NOT NULL,
    updated_at     TEXT    NOT NULL
);
CREATE INDEX ticket_state_log_by_ticket ON ticket_state_log (ticket_id, seq);
CREATE TRIGGER ticket_state_log_no_update BEFORE UPDATE ON ticket_state_log
BEGIN SELECT RAISE(ABORT, 'the ticket state log is append-only'); END;
CREATE TRIGGER ticket_state_log_no_delete BEFORE DELETE ON ticket_state_log
BEGIN SELECT RAISE(ABORT, 'the ticket state log is append-only'); END;

CREATE INDEX effects_by_run ON effects (run_id);
CREATE INDEX notes_by_run ON notes (run_id);
CREATE INDEX review_by_run ON review_items (run_id);

-- Signed checkpoints of the audit chain: (seq, hash) signed with the operator's ed25519
-- key, which lives outside this database. A chain rebuilt by someone who can write this
-- file no longer matches a checkpoint taken before (or shipped elsewhere).
CREATE TABLE audit_checkpoints (
    seq        INTEGER PRIMARY KEY,
    hash       TEXT NOT NULL,
    records    INTEGER NOT NULL,
    signed_at  TEXT NOT NULL,
    public_key TEXT NOT NULL,
    signature  TEXT NOT NULL
);

-- Help-desk connectors (see migrations/sqlite/0007_outbox.sql for what each table is).
--
-- Where a ticket came from: the connector that took it in and the help desk's own id. The
-- effects and approved replies of these tickets go back through the outbox.
CREATE TABLE ticket_sources (
    ticket_id   TEXT PRIMARY KEY,
    connector   TEXT NOT NULL,
    external_id TEXT NOT NULL,
    UNIQUE (connector, external_id)
);

-- Every applied effect and approved reply of a ticket with a source, written in the same
-- transaction as the decision or the approval; the connector's delivery worker sends each
-- once (its id is the idempotency key) and records the outcome.
CREATE TABLE outbox (
    seq            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id             TEXT NOT NULL UNIQUE,
    connector      TEXT NOT NULL,
    ticket_id      TEXT NOT NULL,
    external_id    TEXT NOT NULL,
    kind           TEXT NOT NULL,
    payload_json   TEXT NOT NULL,
    origin         TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('pending', 'sending', 'delivered', 'skipped', 'dead')),
    attempts       INTEGER NOT NULL DEFAULT 0,
    next_at_ms     BIGINT NOT NULL,
    lease_until_ms BIGINT,
    lease_owner    TEXT,
    attempt_at_ms  BIGINT,
    last_error     TEXT,
    delivered_ref  TEXT,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL
);
CREATE INDEX outbox_due ON outbox (connector, state, next_at_ms);
CREATE INDEX outbox_by_ticket ON outbox (ticket_id, seq);

-- Each connector's intake cursor and health.
CREATE TABLE connector_state (
    name         TEXT PRIMARY KEY,
    intake_cursor TEXT,
    last_sync_at TEXT,
    last_error   TEXT,
    paused       TEXT,
    updated_at   TEXT NOT NULL
);

-- What the help desk's agents settled on when they closed a ticket, beside what deskhost
-- proposed: the "unchanged at close" accuracy.
CREATE TABLE close_feedback (
    ticket_id   TEXT NOT NULL,
    field       TEXT NOT NULL,
    connector   TEXT NOT NULL,
    plugin      TEXT NOT NULL,
    proposed    TEXT,
    final_value TEXT,
    closed_at   TEXT NOT NULL,
    PRIMARY KEY (ticket_id, field)
);

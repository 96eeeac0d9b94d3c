-- Installed plugin versions (immutable: an id@version has one digest forever).
CREATE TABLE plugin_versions (
    key           TEXT PRIMARY KEY,
    id            TEXT NOT NULL,
    version       TEXT NOT NULL,
    kind          TEXT NOT NULL,
    digest        TEXT NOT NULL,
    manifest_path TEXT NOT NULL,
    installed_at  TEXT NOT NULL
);

-- Slot changes in order. The active version of a slot is the top of a stack that starts at
-- deskhost.toml's [slots] value: promote pushes, rollback pops. Shadow sets or clears a
-- slot's candidate. Running processes poll MAX(seq) and swap when it moves.
CREATE TABLE slot_events (
    seq    INTEGER PRIMARY KEY,
    slot   TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('promote', 'rollback', 'shadow', 'unshadow')),
    plugin TEXT,
    at     TEXT NOT NULL
);

-- Proposals of shadow candidates: stored beside the run they shadowed, never applied.
CREATE TABLE shadow_runs (
    run_id         TEXT    NOT NULL,
    slot           TEXT    NOT NULL,
    plugin         TEXT    NOT NULL,
    digest         TEXT    NOT NULL,
    ticket_id      TEXT    NOT NULL,
    ticket_version INTEGER NOT NULL,
    outcome        TEXT    NOT NULL,
    proposal_json  TEXT,
    fault_json     TEXT,
    stats_json     TEXT    NOT NULL,
    created_at     TEXT    NOT NULL,
    PRIMARY KEY (run_id, slot)
);
CREATE INDEX shadow_by_plugin ON shadow_runs (plugin, created_at);

-- Replay needs each stage's exact input and output (the WIT values, not their views).
ALTER TABLE run_stages ADD COLUMN input_json TEXT;
ALTER TABLE run_stages ADD COLUMN output_json TEXT;

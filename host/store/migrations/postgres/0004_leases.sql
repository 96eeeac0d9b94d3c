-- Work is claimed before the plugins run (see migrations/sqlite/0004_leases.sql); idle
-- workers LISTEN on deskhost_work and wake when a version is queued.
ALTER TABLE work_queue ADD COLUMN lease_owner TEXT;
ALTER TABLE work_queue ADD COLUMN lease_until BIGINT;
CREATE INDEX work_queue_pending ON work_queue (state, enqueued_at);

CREATE FUNCTION deskhost_notify_work() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('deskhost_work', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER work_queue_notify AFTER INSERT ON work_queue
    FOR EACH STATEMENT EXECUTE FUNCTION deskhost_notify_work();

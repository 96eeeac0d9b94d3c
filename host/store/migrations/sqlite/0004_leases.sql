-- Work is claimed before the plugins run: a worker leases a pending ticket version until
-- lease_until (unix milliseconds); a crashed worker's lease expires and another takes it.
ALTER TABLE work_queue ADD COLUMN lease_owner TEXT;
ALTER TABLE work_queue ADD COLUMN lease_until INTEGER;
CREATE INDEX work_queue_pending ON work_queue (state, enqueued_at);

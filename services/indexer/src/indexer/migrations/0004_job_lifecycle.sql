-- Job lifecycle: the `cancelled` status, and tombstones of deleted jobs.

-- `cancelled` is terminal and ranks above every other status (indexer/projection.py), so a
-- late progress, completed or failed event of a cancelled job never revives it.
ALTER TABLE jobs DROP CONSTRAINT jobs_status_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_status_check
    CHECK (status IN ('queued', 'processing', 'completed', 'failed', 'cancelled'));
ALTER TABLE jobs
    ADD COLUMN cancelled_event_id uuid,
    ADD COLUMN cancelled_at       timestamptz;

-- What remains of a deleted job: who it belonged to and when it went. Its jobs row,
-- transcript, segments and tracking records are gone; any later event of the job (a late
-- `completed`, a replayed upload) finds the tombstone and changes nothing.
CREATE TABLE job_tombstones (
    tenant_id         text NOT NULL REFERENCES tenants (tenant_id),
    job_id            uuid NOT NULL,
    deleted_at        timestamptz NOT NULL,
    -- The `transcription.delete_requested` that erased it: its redelivery announces the
    -- same `transcription.deleted` again, any other request nothing.
    request_event_id  uuid NOT NULL,
    reason            text NOT NULL CHECK (reason IN ('requested', 'retention')),
    PRIMARY KEY (tenant_id, job_id)
);

ALTER TABLE job_tombstones ENABLE ROW LEVEL SECURITY;
ALTER TABLE job_tombstones FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_reads ON job_tombstones FOR SELECT
    USING (tenant_id = current_setting('scribe.tenant_id', true));
CREATE POLICY indexer_writes ON job_tombstones TO CURRENT_USER USING (true) WITH CHECK (true);

-- Long jobs: a job split into chunks (`transcription.chunked.v1`), each chunk's result kept
-- durably as it arrives (`transcription.chunk.transcribed.v1`, upserted by (job, chunk)),
-- and the transactional outbox through which the indexer publishes what it decides
-- (the assembled `transcript.completed.v1`, chunk progress with its ETA).

-- The plan, on the job: how many chunks, and when it was made (the earliest plan wins).
-- `eta_seconds`: the latest estimate of the seconds until the transcript is complete.
ALTER TABLE jobs
    ADD COLUMN chunk_count  integer CHECK (chunk_count BETWEEN 1 AND 2000),
    ADD COLUMN chunked_at   timestamptz,
    ADD COLUMN eta_seconds  double precision CHECK (eta_seconds >= 0);

-- One row per chunk of a job: from the plan (the core it owns, no result yet) or from its
-- result, whichever comes first. A result is stored whole (the event's JSON) and assembled
-- into the transcript when the last one is in (indexer/store.py). Gone with the job.
CREATE TABLE job_chunks (
    tenant_id           text NOT NULL,
    job_id              uuid NOT NULL,
    chunk_index         integer NOT NULL CHECK (chunk_index BETWEEN 0 AND 1999),
    core_start          double precision NOT NULL CHECK (core_start >= 0),
    core_end            double precision NOT NULL CHECK (core_end >= core_start),
    -- the result (NULL while the chunk is not done)
    result_event_id     uuid,
    result              json,
    segment_count       integer,
    audio_seconds       double precision,
    processing_seconds  double precision,
    worker              text,
    transcribed_at      timestamptz,
    updated_at          timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, job_id, chunk_index),
    FOREIGN KEY (tenant_id, job_id) REFERENCES jobs (tenant_id, job_id) ON DELETE CASCADE,
    CHECK ((result IS NULL) = (result_event_id IS NULL))
);

-- What the indexer must publish, written in the transaction that decided it. A relay in
-- the indexer publishes unsent rows in `id` order with publisher confirms, then sets
-- `sent_at` (and drops the payload, which a completion holds in full). A crash between the
-- confirm and that update publishes the row again on restart, with the same event id:
-- consumers deduplicate by `message_id`.
CREATE TABLE event_outbox (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id     uuid NOT NULL UNIQUE,
    tenant_id    text NOT NULL REFERENCES tenants (tenant_id),
    job_id       uuid NOT NULL,
    event_type   text NOT NULL,
    payload      json,
    created_at   timestamptz NOT NULL DEFAULT now(),
    sent_at      timestamptz,
    CHECK (sent_at IS NOT NULL OR payload IS NOT NULL)
);

CREATE INDEX event_outbox_unsent_idx ON event_outbox (id) WHERE sent_at IS NULL;
CREATE INDEX event_outbox_job_idx ON event_outbox (tenant_id, job_id);

ALTER TABLE job_chunks ENABLE ROW LEVEL SECURITY;
ALTER TABLE job_chunks FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_reads ON job_chunks FOR SELECT
    USING (tenant_id = current_setting('scribe.tenant_id', true));
CREATE POLICY indexer_writes ON job_chunks TO CURRENT_USER USING (true) WITH CHECK (true);

ALTER TABLE event_outbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE event_outbox FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_reads ON event_outbox FOR SELECT
    USING (tenant_id = current_setting('scribe.tenant_id', true));
CREATE POLICY indexer_writes ON event_outbox TO CURRENT_USER USING (true) WITH CHECK (true);

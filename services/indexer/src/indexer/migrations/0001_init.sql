-- Scribe's read model. Only the indexer writes these tables; every row carries tenant_id.
-- Applied once by indexer.migrate under an advisory lock and recorded in schema_migrations.

CREATE TABLE tenants (
    tenant_id  text PRIMARY KEY CHECK (tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- One row per job, merged from its events in any order (see indexer/projection.py).
-- Timestamps are the events' own occurred_at, never now(), so that every arrival order of
-- the same events ends in the same row.
CREATE TABLE jobs (
    tenant_id             text NOT NULL REFERENCES tenants (tenant_id),
    job_id                uuid NOT NULL,
    status                text NOT NULL
                          CHECK (status IN ('queued', 'processing', 'completed', 'failed')),
    progress              double precision NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 1),
    processed_seconds     double precision NOT NULL DEFAULT 0,
    attempts              integer NOT NULL DEFAULT 0,
    correlation_id        uuid,
    -- audio.uploaded
    audio_uri             text,
    sha256                text,
    size_bytes            bigint,
    content_type          text,
    original_filename     text,
    requested_language    text,
    requested_model       text,
    word_timestamps       boolean,
    uploaded_at           timestamptz,
    -- transcription.started
    worker                text,
    started_attempt       integer,
    started_at            timestamptz,
    -- transcript.completed (model falls back to the started event's until then)
    model                 text,
    language              text,
    language_probability  double precision,
    duration_seconds      double precision,
    processing_seconds    double precision,
    completed_event_id    uuid,
    completed_at          timestamptz,
    -- transcription.failed (the latest failure; shown only while the job is failed)
    error_code            text,
    error_message         text,
    error_retryable       boolean,
    failed_event_id       uuid,
    failed_at             timestamptz,
    first_event_at        timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL,
    -- When the job was submitted: the upload's time, or the earliest event seen until the
    -- upload event arrives (a completed event can overtake it).
    created_at            timestamptz GENERATED ALWAYS AS (COALESCE(uploaded_at, first_event_at))
                          STORED,
    PRIMARY KEY (tenant_id, job_id)
);

-- Listing pages newest first, optionally by status.
CREATE INDEX jobs_tenant_created_idx ON jobs (tenant_id, created_at DESC, job_id DESC);
CREATE INDEX jobs_tenant_status_created_idx
    ON jobs (tenant_id, status, created_at DESC, job_id DESC);

CREATE TABLE transcripts (
    tenant_id             text NOT NULL,
    job_id                uuid NOT NULL,
    event_id              uuid NOT NULL,
    language              text NOT NULL,
    language_probability  double precision NOT NULL,
    duration_seconds      double precision NOT NULL,
    model                 text NOT NULL,
    text                  text NOT NULL,
    segment_count         integer NOT NULL,
    completed_at          timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, job_id),
    FOREIGN KEY (tenant_id, job_id) REFERENCES jobs (tenant_id, job_id) ON DELETE CASCADE
);

CREATE TABLE segments (
    tenant_id       text NOT NULL,
    job_id          uuid NOT NULL,
    segment_id      integer NOT NULL,
    start_seconds   double precision NOT NULL,
    end_seconds     double precision NOT NULL,
    text            text NOT NULL,
    avg_logprob     double precision,
    no_speech_prob  double precision,
    words           jsonb,
    -- Denormalised from the transcript so search can filter by language without a join.
    language        text NOT NULL,
    tsv             tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED,
    PRIMARY KEY (tenant_id, job_id, segment_id),
    FOREIGN KEY (tenant_id, job_id) REFERENCES transcripts (tenant_id, job_id) ON DELETE CASCADE
);

CREATE INDEX segments_tsv_idx ON segments USING gin (tsv);

-- Tracking records (eventsourcing's idea): written in the projection's own transaction, so
-- an event is either fully applied and recorded, or neither; a redelivery is then a no-op.
CREATE TABLE processed_events (
    event_id      uuid PRIMARY KEY,
    tenant_id     text NOT NULL,
    job_id        uuid NOT NULL,
    event_type    text NOT NULL,
    occurred_at   timestamptz NOT NULL,
    processed_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX processed_events_job_idx ON processed_events (tenant_id, job_id);

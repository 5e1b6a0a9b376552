-- Who spoke when in a long job (`transcription.chunked.v1`'s `speaker_turns`, found once by
-- its planner over the whole file): kept until the last chunk is in, when the assembled
-- segments and words are labelled with them (indexer/chunks.py). One row per diarized long
-- job, written with its plan (the earliest plan wins); gone with the job. Outside `jobs`
-- so that the row every event reads stays small (10 hours of turns: about 1 MB).
CREATE TABLE job_speaker_turns (
    tenant_id   text NOT NULL,
    job_id      uuid NOT NULL,
    turns       json NOT NULL,
    turn_count  integer NOT NULL CHECK (turn_count >= 0),
    planned_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, job_id),
    FOREIGN KEY (tenant_id, job_id) REFERENCES jobs (tenant_id, job_id) ON DELETE CASCADE
);

ALTER TABLE job_speaker_turns ENABLE ROW LEVEL SECURITY;
ALTER TABLE job_speaker_turns FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_reads ON job_speaker_turns FOR SELECT
    USING (tenant_id = current_setting('scribe.tenant_id', true));
CREATE POLICY indexer_writes ON job_speaker_turns TO CURRENT_USER USING (true) WITH CHECK (true);

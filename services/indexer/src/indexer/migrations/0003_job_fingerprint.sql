-- The job's definition: `job_fingerprint` (contracts.audio) of the first upload, or of the
-- first transcription event carrying one when that overtook the upload. An upload or event
-- with another fingerprint is a conflicting one: dead-lettered (`conflicting_job`), never
-- applied. NULL on rows projected before this migration; those fall back to the
-- fingerprint of their stored upload columns (indexer/projection.py, `definition`).
ALTER TABLE jobs ADD COLUMN job_fingerprint text
    CHECK (job_fingerprint ~ '^[0-9a-f]{64}$');

-- Who spoke a segment (`Segment.speaker`, e.g. `SPEAKER_00`) when the job asked for
-- diarization; NULL otherwise and on rows projected before this migration. Search filters
-- on it only after the full-text match, so it needs no index of its own.
ALTER TABLE segments ADD COLUMN speaker text
    CHECK (speaker ~ '^[A-Za-z0-9_-]{1,64}$');

-- Search per language: each segment is indexed with the text-search configuration of its
-- transcript's language, so a German word in another inflection ("Häuser", "Haus") finds a
-- German transcript; English is indexed exactly as before ('english'); a language
-- PostgreSQL has no configuration for is indexed with 'simple' (lower-cased words, no
-- stemming, no stop words), never with another language's stemmer.

-- ISO 639-1 (Whisper's codes) to PostgreSQL's built-in configurations. IMMUTABLE so it can
-- define the stored column; the body is parsed once, its regconfig constants are OIDs.
CREATE FUNCTION scribe_text_search_config(language text) RETURNS regconfig
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE lower(language)
        WHEN 'en' THEN 'pg_catalog.english'::regconfig
        WHEN 'ar' THEN 'pg_catalog.arabic'::regconfig
        WHEN 'hy' THEN 'pg_catalog.armenian'::regconfig
        WHEN 'eu' THEN 'pg_catalog.basque'::regconfig
        WHEN 'ca' THEN 'pg_catalog.catalan'::regconfig
        WHEN 'da' THEN 'pg_catalog.danish'::regconfig
        WHEN 'nl' THEN 'pg_catalog.dutch'::regconfig
        WHEN 'fi' THEN 'pg_catalog.finnish'::regconfig
        WHEN 'fr' THEN 'pg_catalog.french'::regconfig
        WHEN 'de' THEN 'pg_catalog.german'::regconfig
        WHEN 'el' THEN 'pg_catalog.greek'::regconfig
        WHEN 'hi' THEN 'pg_catalog.hindi'::regconfig
        WHEN 'hu' THEN 'pg_catalog.hungarian'::regconfig
        WHEN 'id' THEN 'pg_catalog.indonesian'::regconfig
        WHEN 'ga' THEN 'pg_catalog.irish'::regconfig
        WHEN 'it' THEN 'pg_catalog.italian'::regconfig
        WHEN 'lt' THEN 'pg_catalog.lithuanian'::regconfig
        WHEN 'ne' THEN 'pg_catalog.nepali'::regconfig
        WHEN 'no' THEN 'pg_catalog.norwegian'::regconfig
        WHEN 'nb' THEN 'pg_catalog.norwegian'::regconfig
        WHEN 'nn' THEN 'pg_catalog.norwegian'::regconfig
        WHEN 'pt' THEN 'pg_catalog.portuguese'::regconfig
        WHEN 'ro' THEN 'pg_catalog.romanian'::regconfig
        WHEN 'ru' THEN 'pg_catalog.russian'::regconfig
        WHEN 'sr' THEN 'pg_catalog.serbian'::regconfig
        WHEN 'es' THEN 'pg_catalog.spanish'::regconfig
        WHEN 'sv' THEN 'pg_catalog.swedish'::regconfig
        WHEN 'ta' THEN 'pg_catalog.tamil'::regconfig
        WHEN 'tr' THEN 'pg_catalog.turkish'::regconfig
        WHEN 'yi' THEN 'pg_catalog.yiddish'::regconfig
        ELSE 'pg_catalog.simple'::regconfig
    END;

-- A generated column's expression cannot be altered before PostgreSQL 17: drop and re-add
-- it (a table rewrite, once), then rebuild the one GIN index that serves every language.
-- English rows get the very same tsvector as before, so English search keeps its plan.
ALTER TABLE segments DROP COLUMN tsv;
ALTER TABLE segments ADD COLUMN tsv tsvector
    GENERATED ALWAYS AS (to_tsvector(scribe_text_search_config(language), text)) STORED;
CREATE INDEX segments_tsv_idx ON segments USING gin (tsv);

-- The languages a tenant's transcripts are in: a search parses its query once per
-- configuration among them (an English-only tenant: once, in 'english', as before).
-- Written by the indexer with each transcript; never shrinks (a language no longer present
-- costs one more, empty, index probe).
CREATE TABLE search_languages (
    tenant_id  text NOT NULL REFERENCES tenants (tenant_id),
    language   text NOT NULL,
    PRIMARY KEY (tenant_id, language)
);
INSERT INTO search_languages (tenant_id, language)
    SELECT DISTINCT tenant_id, language FROM transcripts ON CONFLICT DO NOTHING;

ALTER TABLE search_languages ENABLE ROW LEVEL SECURITY;
ALTER TABLE search_languages FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_reads ON search_languages FOR SELECT
    USING (tenant_id = current_setting('scribe.tenant_id', true));
CREATE POLICY indexer_writes ON search_languages TO CURRENT_USER USING (true) WITH CHECK (true);

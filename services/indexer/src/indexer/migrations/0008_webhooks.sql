-- Webhooks: endpoints (projected from ingest's webhook.endpoint.* events) and the delivery
-- log (from scribe-webhooks' webhook.delivery.* events). Every projection is idempotent
-- (tracking records in processed_events) and order-independent: a deletion is a tombstone
-- a late registration cannot undo, the newest rotation's secret wins, and a delivery's
-- status is computed at read time from its newest attempt.

CREATE TABLE webhook_endpoints (
    tenant_id      text NOT NULL REFERENCES tenants (tenant_id),
    endpoint_id    uuid NOT NULL,
    url            text,
    event_types    text[],
    description    text,
    -- The signing secret: the dispatcher reads it (through the SELECT-only role, scoped to
    -- the tenant); the API never returns it after creation. See SECURITY.md.
    secret         text,
    secret_at      timestamptz,
    registered_at  timestamptz,
    deleted_at     timestamptz,
    updated_at     timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, endpoint_id)
);

CREATE TABLE webhook_deliveries (
    tenant_id      text NOT NULL REFERENCES tenants (tenant_id),
    delivery_id    uuid NOT NULL,
    endpoint_id    uuid NOT NULL,
    job_id         uuid NOT NULL,
    message_id     text NOT NULL,
    event_type     text NOT NULL,
    payload        jsonb NOT NULL,
    created_at     timestamptz NOT NULL,
    -- The newest request (first or replay): later than every attempt means pending.
    requested_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, delivery_id)
);

CREATE INDEX webhook_deliveries_endpoint_idx
    ON webhook_deliveries (tenant_id, endpoint_id, created_at DESC, delivery_id DESC);

CREATE TABLE webhook_delivery_attempts (
    event_id         uuid PRIMARY KEY,
    tenant_id        text NOT NULL REFERENCES tenants (tenant_id),
    delivery_id      uuid NOT NULL,
    endpoint_id      uuid NOT NULL,
    attempt          integer NOT NULL,
    outcome          text NOT NULL,
    status_code      integer,
    error            text,
    duration_ms      double precision NOT NULL,
    attempted_at     timestamptz NOT NULL,
    next_attempt_at  timestamptz
);

CREATE INDEX webhook_delivery_attempts_delivery_idx
    ON webhook_delivery_attempts (tenant_id, delivery_id, attempted_at, event_id);

ALTER TABLE webhook_endpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_endpoints FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_reads ON webhook_endpoints FOR SELECT
    USING (tenant_id = current_setting('scribe.tenant_id', true));
CREATE POLICY indexer_writes ON webhook_endpoints TO CURRENT_USER USING (true) WITH CHECK (true);

ALTER TABLE webhook_deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_deliveries FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_reads ON webhook_deliveries FOR SELECT
    USING (tenant_id = current_setting('scribe.tenant_id', true));
CREATE POLICY indexer_writes ON webhook_deliveries TO CURRENT_USER USING (true) WITH CHECK (true);

ALTER TABLE webhook_delivery_attempts ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_delivery_attempts FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_reads ON webhook_delivery_attempts FOR SELECT
    USING (tenant_id = current_setting('scribe.tenant_id', true));
CREATE POLICY indexer_writes ON webhook_delivery_attempts TO CURRENT_USER
    USING (true) WITH CHECK (true);

-- Every change to a tenant's webhook endpoints is announced on the channel
-- `scribe_webhook_endpoints` with the tenant id as payload, so that scribe-webhooks can
-- keep each tenant's live endpoints in memory and drop exactly the entry that changed
-- (services/webhooks/src/webhooks/endpoints.py). PostgreSQL delivers a notification when
-- its transaction commits, and never if it rolls back; identical ones within a transaction
-- are sent once. TRUNCATE (tests, an operator) announces an empty payload: every tenant.

CREATE FUNCTION webhook_endpoints_notify() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('scribe_webhook_endpoints', '');
        RETURN NULL;
    END IF;
    IF TG_OP <> 'INSERT' THEN
        PERFORM pg_notify('scribe_webhook_endpoints', OLD.tenant_id);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM pg_notify('scribe_webhook_endpoints', NEW.tenant_id);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER webhook_endpoints_notify
    AFTER INSERT OR UPDATE OR DELETE ON webhook_endpoints
    FOR EACH ROW EXECUTE FUNCTION webhook_endpoints_notify();

CREATE TRIGGER webhook_endpoints_notify_truncate
    AFTER TRUNCATE ON webhook_endpoints
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_endpoints_notify();

-- The catalog's audit trail: users, buildings and apartments are written by the API in
-- one transaction each (no workflow), and each write leaves one row here in that
-- transaction. Append-only, like booking_events.
CREATE TABLE catalog_events (
    id          bigserial PRIMARY KEY,
    operation   text NOT NULL,        -- create_user, update_user, delete_user, ...
    target_id   text NOT NULL,        -- the id of the user, building or apartment
    actor       text NOT NULL,        -- 'api-key', 'user:<sub>' or 'seed'
    at          timestamptz NOT NULL DEFAULT now(),
    details     jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX catalog_events_target_idx ON catalog_events (target_id, id);

CREATE FUNCTION catalog_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'catalog_events is append-only';
END $$;
CREATE TRIGGER catalog_events_no_update BEFORE UPDATE OR DELETE ON catalog_events
    FOR EACH ROW EXECUTE FUNCTION catalog_events_append_only();

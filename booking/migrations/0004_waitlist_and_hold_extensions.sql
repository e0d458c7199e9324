-- The waiting list of an apartment: tenants who want it once it is released, in joining
-- order. Written only by workflow activities: joining and leaving by the entry's own
-- workflow, offers by the release of the hold or lease before it (one transaction: the
-- apartment never shows VACANT while someone waits), BOOKED / LAPSED by the offered booking.
CREATE TABLE waitlist_entries (
    id                 text PRIMARY KEY,
    workflow_id        text NOT NULL UNIQUE,
    apartment_id       text NOT NULL REFERENCES apartments (id),
    user_id            text NOT NULL REFERENCES users (id),
    start_date         date NOT NULL,
    end_date           date NOT NULL,
    status             text NOT NULL
                       CHECK (status IN ('WAITING', 'OFFERED', 'BOOKED', 'LAPSED', 'LEFT')),
    offered_booking_id text REFERENCES bookings (id),
    -- Joining order (positions count WAITING entries by it).
    seq                bigserial NOT NULL,
    created_on         timestamptz NOT NULL DEFAULT now(),
    updated_on         timestamptz NOT NULL DEFAULT now(),
    CHECK (end_date > start_date),
    -- An offer or a booking names the booking it made.
    CHECK (status NOT IN ('OFFERED', 'BOOKED') OR offered_booking_id IS NOT NULL)
);
-- One live entry (waiting, or holding an offer) per tenant and apartment.
CREATE UNIQUE INDEX waitlist_one_live_entry_per_tenant
    ON waitlist_entries (apartment_id, user_id) WHERE status IN ('WAITING', 'OFFERED');
CREATE INDEX waitlist_waiting_in_order
    ON waitlist_entries (apartment_id, seq) WHERE status = 'WAITING';
CREATE UNIQUE INDEX waitlist_offer_per_booking
    ON waitlist_entries (offered_booking_id) WHERE offered_booking_id IS NOT NULL;
CREATE INDEX waitlist_by_user ON waitlist_entries (user_id, created_on);

-- booking_events records the waiting list's transitions too: a row names a booking, an
-- entry, or both (an offer).
ALTER TABLE booking_events ALTER COLUMN booking_id DROP NOT NULL;
ALTER TABLE booking_events ADD COLUMN waitlist_entry_id text REFERENCES waitlist_entries (id);
ALTER TABLE booking_events
    ADD CONSTRAINT booking_events_names_something
    CHECK (booking_id IS NOT NULL OR waitlist_entry_id IS NOT NULL);
CREATE INDEX booking_events_entry_idx ON booking_events (waitlist_entry_id, id)
    WHERE waitlist_entry_id IS NOT NULL;

-- extendHold: how often the hold was moved later.
ALTER TABLE bookings ADD COLUMN hold_extensions integer NOT NULL DEFAULT 0
    CHECK (hold_extensions >= 0);

-- Subscribers also hear of a hold moved later (extendHold).
CREATE OR REPLACE FUNCTION bookings_notify_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT'
       OR NEW.booking_status IS DISTINCT FROM OLD.booking_status
       OR NEW.lease_ended_at IS DISTINCT FROM OLD.lease_ended_at
       OR NEW.hold_expires_at IS DISTINCT FROM OLD.hold_expires_at THEN
        PERFORM pg_notify('booking_status', json_build_object(
            'id', NEW.id, 'status', NEW.booking_status,
            'apartmentId', NEW.apartment_id)::text);
    END IF;
    RETURN NEW;
END $$;

-- Every change of an entry is announced per apartment: a change of one entry moves the
-- positions of the others behind it.
CREATE FUNCTION waitlist_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('waitlist_entry', json_build_object(
        'id', NEW.id, 'status', NEW.status, 'apartmentId', NEW.apartment_id)::text);
    RETURN NEW;
END $$;
CREATE TRIGGER waitlist_entries_notify AFTER INSERT OR UPDATE ON waitlist_entries
    FOR EACH ROW EXECUTE FUNCTION waitlist_notify();

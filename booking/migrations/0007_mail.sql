-- Mail to tenants (issue 25): an outbox. A notification is written by the same transaction as
-- the transition it reports, by a trigger on booking_events (every writer appends its events
-- there: the workflows' activities and booking doctor alike), so no email goes out for a change
-- that rolled back and none is lost for one that committed. The worker sends them.

CREATE TABLE notifications (
    id              bigserial PRIMARY KEY,
    event_id        bigint NOT NULL UNIQUE REFERENCES booking_events (id),
    booking_id      text REFERENCES bookings (id),
    waitlist_entry_id text,
    user_id         text NOT NULL,
    kind            text NOT NULL,
    to_address      text,
    -- PENDING: to send. SENT: the server accepted it. FAILED: refused for good (5xx) or no
    -- valid address (to_address NULL); last_error says why. Never deleted.
    status          text NOT NULL DEFAULT 'PENDING'
                    CHECK (status IN ('PENDING', 'SENT', 'FAILED')),
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text,
    -- The Message-ID every attempt sends: a copy the server already accepted is recognisable.
    message_id      text NOT NULL,
    created_on      timestamptz NOT NULL DEFAULT now(),
    sent_on         timestamptz,
    CHECK ((status = 'SENT') = (sent_on IS NOT NULL))
);
CREATE INDEX notifications_pending ON notifications (booking_id) WHERE status = 'PENDING';

-- The transitions a tenant is told of, by event reason.
CREATE FUNCTION booking_events_notify_tenant() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    recipient text;
    address   text;
BEGIN
    IF NEW.reason NOT IN ('RESERVED', 'HOLD_ENDING', 'EXPIRED', 'PAID', 'REFUNDED',
                          'OFFERED', 'LAPSED', 'RENT_ISSUED', 'RENT_DUE', 'RENT_OVERDUE',
                          'RENT_REMINDER', 'RENT_PAID') THEN
        RETURN NEW;
    END IF;
    SELECT b.user_id INTO recipient FROM bookings b WHERE b.id = NEW.booking_id;
    IF recipient IS NULL AND NEW.waitlist_entry_id IS NOT NULL THEN
        SELECT w.user_id INTO recipient FROM waitlist_entries w WHERE w.id = NEW.waitlist_entry_id;
    END IF;
    IF recipient IS NULL THEN
        RETURN NEW;
    END IF;
    SELECT u.email INTO address FROM users u WHERE u.id = recipient;
    IF address IS NULL OR address !~ '^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$' THEN
        INSERT INTO notifications (event_id, booking_id, waitlist_entry_id, user_id, kind,
                                   to_address, status, last_error, message_id)
        VALUES (NEW.id, NEW.booking_id, NEW.waitlist_entry_id, recipient, NEW.reason, NULL,
                'FAILED', 'the account has no valid email address',
                '<notification-' || NEW.id || '@booking.invalid>');
        RETURN NEW;
    END IF;
    INSERT INTO notifications (event_id, booking_id, waitlist_entry_id, user_id, kind,
                               to_address, message_id)
    VALUES (NEW.id, NEW.booking_id, NEW.waitlist_entry_id, recipient, NEW.reason, address,
            '<notification-' || NEW.id || '@booking.invalid>');
    RETURN NEW;
END $$;
CREATE TRIGGER booking_events_notify_tenant AFTER INSERT ON booking_events
    FOR EACH ROW EXECUTE FUNCTION booking_events_notify_tenant();

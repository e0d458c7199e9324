-- Mail to tenants (issue 25): an outbox. A notification is written by the same transaction as
-- the transition it reports, by a trigger on booking_events (every writer appends its events
-- there: the workflows' activities and booking doctor alike), so no email goes out for a change
-- that rolled back and none is lost for one that committed. The workflow whose transition it
-- was sends it (activities.mail); booking doctor reports those stuck or refused.

CREATE TABLE notifications (
    id                bigserial PRIMARY KEY,
    event_id          bigint NOT NULL UNIQUE REFERENCES booking_events (id),
    -- What it is about: a booking (an offer is one too), or only a waiting-list entry.
    booking_id        text REFERENCES bookings (id),
    waitlist_entry_id text REFERENCES waitlist_entries (id),
    user_id           text NOT NULL,
    kind              text NOT NULL,
    to_address        text,
    -- PENDING: to send. SENT: the server accepted it. FAILED: refused for good (5xx) or no
    -- valid address (to_address NULL, never attempted); last_error says why. Never deleted.
    status            text NOT NULL DEFAULT 'PENDING'
                      CHECK (status IN ('PENDING', 'SENT', 'FAILED')),
    attempts          integer NOT NULL DEFAULT 0,
    last_error        text,
    -- The Message-ID every attempt sends: a copy the server already accepted is recognisable.
    -- Random (not the row's id), so that two installations never share one.
    message_id        text NOT NULL UNIQUE,
    created_on        timestamptz NOT NULL DEFAULT now(),
    sent_on           timestamptz,
    CHECK ((status = 'SENT') = (sent_on IS NOT NULL)),
    CHECK (status = 'FAILED' OR to_address IS NOT NULL),
    CHECK (booking_id IS NOT NULL OR waitlist_entry_id IS NOT NULL)
);
CREATE INDEX notifications_pending_booking ON notifications (booking_id, id)
    WHERE status = 'PENDING';
CREATE INDEX notifications_pending_entry ON notifications (waitlist_entry_id, id)
    WHERE status = 'PENDING' AND booking_id IS NULL;
CREATE INDEX notifications_by_status ON notifications (status, created_on);

-- Which transitions a tenant is told of, and as what kind of message (booking.mail renders
-- each kind). NULL: none.
CREATE FUNCTION notification_kind(event booking_events) RETURNS text LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF event.waitlist_entry_id IS NOT NULL THEN
        -- A waiting-list entry's own transitions (the offer's booking rides along).
        IF event.to_status = 'OFFERED' THEN
            RETURN 'OFFERED';
        ELSIF event.to_status = 'LAPSED' AND event.from_status = 'OFFERED' THEN
            RETURN 'OFFER_LAPSED';
        ELSIF event.to_status = 'LAPSED' THEN
            RETURN 'WAITLIST_LAPSED';  -- its stay began before anything was freed
        END IF;
        RETURN NULL;
    END IF;
    IF event.reason = 'RESERVED' THEN
        RETURN 'HOLD_PLACED';
    ELSIF event.reason = 'HOLD_ENDING' THEN
        RETURN 'HOLD_ENDING';
    ELSIF event.reason = 'EXPIRED' AND event.to_status = 'CANCELLED' THEN
        -- An offer that ran out is told as the offer's lapse (its entry's event), once.
        IF EXISTS (SELECT 1 FROM waitlist_entries w
                    WHERE w.offered_booking_id = event.booking_id) THEN
            RETURN NULL;
        END IF;
        RETURN 'HOLD_EXPIRED';
    ELSIF event.reason = 'PAID' AND event.to_status = 'APPROVED' THEN
        RETURN 'PAYMENT_RECEIVED';
    ELSIF event.reason = 'REFUNDED' THEN
        RETURN 'PAYMENT_REFUNDED';
    ELSIF event.reason IN ('RENT_ISSUED', 'RENT_DUE', 'RENT_OVERDUE', 'RENT_REMINDER',
                           'RENT_PAID', 'LEASE_ENDS_EARLIER', 'LEASE_RENEWED') THEN
        RETURN event.reason;
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION booking_events_notify_tenant() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    message_kind text := notification_kind(NEW);
    recipient    text;
    address      text;
    valid        boolean;
BEGIN
    IF message_kind IS NULL THEN
        RETURN NEW;
    END IF;
    IF NEW.booking_id IS NOT NULL THEN
        SELECT b.user_id INTO recipient FROM bookings b WHERE b.id = NEW.booking_id;
    ELSE
        SELECT w.user_id INTO recipient FROM waitlist_entries w WHERE w.id = NEW.waitlist_entry_id;
    END IF;
    IF recipient IS NULL THEN
        RETURN NEW;
    END IF;
    SELECT u.email INTO address FROM users u WHERE u.id = recipient;
    -- One address, no display name or list: what the account should hold.
    valid := coalesce(address ~ '^[^@\s<>,;"]+@[^@\s<>,;"]+\.[^@\s<>,;".]+$', false);
    INSERT INTO notifications (event_id, booking_id, waitlist_entry_id, user_id, kind,
                               to_address, status, last_error, message_id)
    VALUES (NEW.id, NEW.booking_id, NEW.waitlist_entry_id, recipient, message_kind,
            CASE WHEN valid THEN address END,
            CASE WHEN valid THEN 'PENDING' ELSE 'FAILED' END,
            CASE WHEN valid THEN NULL
                 ELSE 'the account has no valid email address: not attempted' END,
            '<' || gen_random_uuid() || '@booking.invalid>');
    RETURN NEW;
END $$;
CREATE TRIGGER booking_events_notify_tenant AFTER INSERT ON booking_events
    FOR EACH ROW EXECUTE FUNCTION booking_events_notify_tenant();

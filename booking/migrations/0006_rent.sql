-- A lease's rent (booking.rent): one invoice per period, written by the lease's own workflow
-- activities. The first period's invoice is the one paying the booking paid.

-- The rent a stay was booked at is part of its terms: later changes of the apartment's rent
-- do not touch it. Stays booked before this column existed take the apartment's rent of now.
ALTER TABLE bookings ADD COLUMN monthly_rent bigint CHECK (monthly_rent >= 0);
UPDATE bookings b SET monthly_rent = a.monthly_rent FROM apartments a WHERE a.id = b.apartment_id;

CREATE TABLE rent_invoices (
    id                text PRIMARY KEY,
    booking_id        text NOT NULL REFERENCES bookings (id),
    seq               integer NOT NULL CHECK (seq >= 0),
    period_start      date NOT NULL,
    period_end        date NOT NULL,
    due_date          date NOT NULL,
    rent              bigint NOT NULL CHECK (rent >= 0),
    late_fee          bigint NOT NULL DEFAULT 0 CHECK (late_fee >= 0),
    -- Paid money given back for nights the lease no longer has (an early end).
    refunded          bigint NOT NULL DEFAULT 0 CHECK (refunded >= 0),
    currency          char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status            text NOT NULL
                      CHECK (status IN ('SCHEDULED', 'ISSUED', 'PAID', 'OVERDUE', 'VOID')),
    issued_at         timestamptz,
    paid_at           timestamptz,
    payment_reference text,
    created_on        timestamptz NOT NULL DEFAULT now(),
    updated_on        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (booking_id, seq),
    CHECK (period_end > period_start),
    -- Paid means paid by a reference; a paid period the lease gave up is VOID and keeps them
    -- (its money refunded: refunded).
    CHECK (status <> 'PAID' OR (paid_at IS NOT NULL AND payment_reference IS NOT NULL)),
    CHECK (paid_at IS NULL OR status IN ('PAID', 'VOID'))
);
-- A reference pays one invoice of a booking.
CREATE UNIQUE INDEX rent_invoices_reference
    ON rent_invoices (booking_id, payment_reference) WHERE payment_reference IS NOT NULL;
-- What operators and the lease's workflow look for: the invoices still owed.
CREATE INDEX rent_invoices_open ON rent_invoices (due_date) WHERE status IN ('ISSUED', 'OVERDUE');

-- Every change of an invoice is announced (onRentInvoiceChanged), in its transaction.
CREATE FUNCTION rent_invoices_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('rent_invoice', json_build_object(
        'id', NEW.id, 'bookingId', NEW.booking_id, 'status', NEW.status)::text);
    RETURN NEW;
END $$;
CREATE TRIGGER rent_invoices_notify AFTER INSERT OR UPDATE ON rent_invoices
    FOR EACH ROW EXECUTE FUNCTION rent_invoices_notify();

-- Subscribers of a booking also hear of its move-out day moving (endLease, renewLease).
CREATE OR REPLACE FUNCTION bookings_notify_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT'
       OR NEW.booking_status IS DISTINCT FROM OLD.booking_status
       OR NEW.lease_ended_at IS DISTINCT FROM OLD.lease_ended_at
       OR NEW.hold_expires_at IS DISTINCT FROM OLD.hold_expires_at
       OR NEW.end_date IS DISTINCT FROM OLD.end_date THEN
        PERFORM pg_notify('booking_status', json_build_object(
            'id', NEW.id, 'status', NEW.booking_status,
            'apartmentId', NEW.apartment_id)::text);
    END IF;
    RETURN NEW;
END $$;

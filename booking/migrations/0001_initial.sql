-- The booking store. Constraints here are the last line of defence: even a
-- buggy activity cannot double-book an apartment or record a payment twice.

CREATE TABLE users (
    id          text PRIMARY KEY,
    first_name  text NOT NULL CHECK (length(first_name) BETWEEN 1 AND 200),
    last_name   text NOT NULL CHECK (length(last_name) BETWEEN 1 AND 200),
    email       text NOT NULL CHECK (length(email) BETWEEN 3 AND 320),
    verified    boolean NOT NULL DEFAULT false,
    user_type   text NOT NULL CHECK (user_type IN ('ADMIN', 'TENANT', 'CARETAKER')),
    created_on  timestamptz NOT NULL DEFAULT now(),
    updated_on  timestamptz
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE buildings (
    id                   text PRIMARY KEY,
    user_id              text NOT NULL REFERENCES users (id),
    name                 text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    street_address       text NOT NULL,
    postal_code          text NOT NULL,
    city                 text NOT NULL,
    country              text NOT NULL,
    number_of_apartments integer NOT NULL CHECK (number_of_apartments >= 0),
    created_on           timestamptz NOT NULL DEFAULT now(),
    update_on            timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE apartments (
    id               text PRIMARY KEY,
    apartment_number text NOT NULL,
    building_id      text NOT NULL REFERENCES buildings (id),
    tenant_id        text REFERENCES users (id),
    caretaker_id     text REFERENCES users (id),
    apartment_type   text NOT NULL CHECK (apartment_type IN ('SINGLE_ROOM', 'DOUBLE_ROOM', 'VILLA')),
    apartment_status text NOT NULL DEFAULT 'VACANT'
                     CHECK (apartment_status IN ('VACANT', 'RESERVED', 'OCCUPIED')),
    kitchen          boolean NOT NULL,
    number_of_rooms  integer NOT NULL CHECK (number_of_rooms >= 0),
    monthly_rent     bigint NOT NULL CHECK (monthly_rent >= 0),
    currency         char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    created_on       timestamptz NOT NULL DEFAULT now(),
    updated_on       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (building_id, apartment_number),
    -- A vacant apartment has no tenant. (An OCCUPIED one may have none: an
    -- admin can record an apartment let outside this system.)
    CHECK (apartment_status <> 'VACANT' OR tenant_id IS NULL)
);
CREATE INDEX apartments_building_idx ON apartments (building_id);

CREATE TABLE bookings (
    id                  text PRIMARY KEY,
    workflow_id         text NOT NULL UNIQUE,
    user_id             text NOT NULL REFERENCES users (id),
    apartment_id        text NOT NULL REFERENCES apartments (id),
    start_date          date NOT NULL,
    end_date            date NOT NULL,
    booking_status      text NOT NULL CHECK (booking_status IN ('PENDING', 'APPROVED', 'CANCELLED')),
    amount_due          bigint NOT NULL CHECK (amount_due >= 0),
    currency            char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    hold_expires_at     timestamptz,
    paid_at             timestamptz,
    cancellation_reason text,
    lease_ended_at      timestamptz,
    idempotency_key     text,
    created_on          timestamptz NOT NULL DEFAULT now(),
    update_on           timestamptz NOT NULL DEFAULT now(),
    CHECK (end_date > start_date),
    CHECK ((booking_status = 'APPROVED') = (paid_at IS NOT NULL)),
    CHECK ((booking_status = 'CANCELLED') = (cancellation_reason IS NOT NULL)),
    CHECK (lease_ended_at IS NULL OR booking_status = 'APPROVED')
);
-- The rule the original lacked: at most one open hold or running lease per
-- apartment, whatever the code above it does.
CREATE UNIQUE INDEX bookings_one_active_per_apartment
    ON bookings (apartment_id)
    WHERE booking_status = 'PENDING'
       OR (booking_status = 'APPROVED' AND lease_ended_at IS NULL);
CREATE INDEX bookings_apartment_idx ON bookings (apartment_id, created_on);
CREATE INDEX bookings_user_idx ON bookings (user_id, created_on);

CREATE TABLE payments (
    id                bigserial PRIMARY KEY,
    booking_id        text NOT NULL REFERENCES bookings (id),
    payment_reference text NOT NULL UNIQUE,
    amount            bigint NOT NULL,
    currency          char(3) NOT NULL,
    -- APPLIED: it paid the booking. REFUNDED: it arrived late, doubled or wrong.
    outcome           text NOT NULL CHECK (outcome IN ('APPLIED', 'REFUNDED')),
    received_at       timestamptz NOT NULL,
    recorded_at       timestamptz NOT NULL DEFAULT now()
);
-- A booking is paid by exactly one payment.
CREATE UNIQUE INDEX payments_one_applied_per_booking
    ON payments (booking_id) WHERE outcome = 'APPLIED';

CREATE TABLE refunds (
    id          bigserial PRIMARY KEY,
    payment_id  bigint NOT NULL UNIQUE REFERENCES payments (id),
    booking_id  text NOT NULL REFERENCES bookings (id),
    amount      bigint NOT NULL,
    currency    char(3) NOT NULL,
    reason      text NOT NULL,
    created_on  timestamptz NOT NULL DEFAULT now()
);

-- Append-only: one row per transition, never updated or deleted.
CREATE TABLE booking_events (
    id          bigserial PRIMARY KEY,
    booking_id  text NOT NULL REFERENCES bookings (id),
    from_status text,
    to_status   text NOT NULL,
    reason      text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    details     jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX booking_events_booking_idx ON booking_events (booking_id, id);

CREATE FUNCTION booking_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'booking_events is append-only';
END $$;
CREATE TRIGGER booking_events_no_update BEFORE UPDATE OR DELETE ON booking_events
    FOR EACH ROW EXECUTE FUNCTION booking_events_append_only();

-- Every status change is announced in the same transaction, so a listener
-- (the API's subscriptions) never sees a change that was rolled back.
CREATE FUNCTION bookings_notify_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT'
       OR NEW.booking_status IS DISTINCT FROM OLD.booking_status
       OR NEW.lease_ended_at IS DISTINCT FROM OLD.lease_ended_at THEN
        PERFORM pg_notify('booking_status', json_build_object(
            'id', NEW.id, 'status', NEW.booking_status,
            'apartmentId', NEW.apartment_id)::text);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER bookings_status_notify AFTER INSERT OR UPDATE ON bookings
    FOR EACH ROW EXECUTE FUNCTION bookings_notify_status();

-- Executions started through the tutorial's addStepFunction mutation.
CREATE TABLE step_function_executions (
    id          text PRIMARY KEY,
    arn         text NOT NULL,
    created_on  timestamptz NOT NULL DEFAULT now()
);

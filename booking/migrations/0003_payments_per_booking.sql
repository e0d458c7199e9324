-- A payment reference is the payer's own and belongs to its booking: unique per booking,
-- not across every booking (one tenant's reference must never block another's payment).
ALTER TABLE payments DROP CONSTRAINT payments_payment_reference_key;
ALTER TABLE payments
    ADD CONSTRAINT payments_booking_reference_key UNIQUE (booking_id, payment_reference);

-- Money that reached a booking which was never placed (its reservation was refused after
-- the provider had charged). There is no booking row to attach it to; it is recorded here,
-- to be refunded, and never dropped.
CREATE TABLE unplaced_payments (
    id                bigserial PRIMARY KEY,
    booking_id        text NOT NULL,
    payment_reference text NOT NULL,
    amount            bigint NOT NULL,
    currency          char(3) NOT NULL,
    received_at       timestamptz NOT NULL,
    refund_reason     text NOT NULL,
    recorded_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (booking_id, payment_reference)
);

-- Stays on a calendar. A booking covers the nights [start_date, end_date): end_date is the
-- move-out day, not a night of the stay, so two stays touch without overlapping when one's
-- end_date is the other's start_date. An apartment is no longer one switch: its status is
-- read for a day from the stays that cover it (booking.store.calendar).
CREATE EXTENSION IF NOT EXISTS btree_gist;

ALTER TABLE bookings
    ADD COLUMN stay daterange GENERATED ALWAYS AS (daterange(start_date, end_date, '[)')) STORED;

-- The rule the original lacked, on ranges: the live stays of one apartment (open holds, and
-- paid stays whose lease has not ended) never share a night, whatever the code above does,
-- across API processes and workers. The old one-live-booking index allowed a single live
-- booking per apartment, so no existing rows can violate this.
ALTER TABLE bookings
    ADD CONSTRAINT bookings_no_overlapping_stays
    EXCLUDE USING gist (apartment_id WITH =, stay WITH &&)
    WHERE (booking_status = 'PENDING'
           OR (booking_status = 'APPROVED' AND lease_ended_at IS NULL));
DROP INDEX bookings_one_active_per_apartment;

-- Which apartments are busy on some night of a range (searchApartments): every live stay
-- overlapping it, read from the index alone (apartment_id is carried in it).
CREATE INDEX bookings_live_stays
    ON bookings USING gist (stay) INCLUDE (apartment_id)
    WHERE booking_status = 'PENDING'
       OR (booking_status = 'APPROVED' AND lease_ended_at IS NULL);

-- Paid stays, ended or not, are the calendar's BOOKED ranges (an ended lease is history, not
-- a claim: the exclusion above does not count it).
CREATE INDEX bookings_stays_by_apartment
    ON bookings USING gist (apartment_id, stay)
    WHERE booking_status IN ('PENDING', 'APPROVED');

-- apartments.apartment_status keeps only what no booking says: OCCUPIED for an apartment let
-- outside this service (no stay can be booked), VACANT otherwise. RESERVED and OCCUPIED by a
-- booking are read from the stays; the tenant of today likewise.
UPDATE apartments a
   SET apartment_status = 'VACANT', tenant_id = NULL, updated_on = now()
 WHERE apartment_status = 'RESERVED'
    OR (apartment_status = 'OCCUPIED'
        AND EXISTS (SELECT 1 FROM bookings b
                     WHERE b.apartment_id = a.id AND b.booking_status = 'APPROVED'
                       AND b.lease_ended_at IS NULL AND b.user_id = a.tenant_id));
ALTER TABLE apartments
    ADD CONSTRAINT apartments_status_not_reserved CHECK (apartment_status <> 'RESERVED');

-- A waiting-list entry asks for a range; the entries waiting for nights of an apartment are
-- found by overlap when a stay is released.
ALTER TABLE waitlist_entries
    ADD COLUMN stay daterange GENERATED ALWAYS AS (daterange(start_date, end_date, '[)')) STORED;

-- The first free night of an apartment on or after ``day``: walks the chain of live stays
-- that cover it (each step moves to a stay's end, so it ends). NULL for an apartment let
-- outside this service.
CREATE FUNCTION apartment_available_from(apartment text, day date) RETURNS date
LANGUAGE plpgsql STABLE AS $$
DECLARE
    free date := day;
    next_free date;
BEGIN
    IF EXISTS (SELECT 1 FROM apartments WHERE id = apartment AND apartment_status = 'OCCUPIED') THEN
        RETURN NULL;
    END IF;
    LOOP
        SELECT max(upper(b.stay)) INTO next_free
          FROM bookings b
         WHERE b.apartment_id = apartment
           AND (b.booking_status = 'PENDING'
                OR (b.booking_status = 'APPROVED' AND b.lease_ended_at IS NULL))
           AND b.stay @> free;
        EXIT WHEN next_free IS NULL;
        free := next_free;
    END LOOP;
    RETURN free;
END $$;

-- The apartments as they stand on ``day``: the status and tenant of that day read from the
-- stays (OCCUPIED and its tenant when a paid stay covers it, RESERVED when an open hold's
-- does, else the apartment's own VACANT or let-outside OCCUPIED). One SQL function (inlined
-- by the planner, so a caller's WHERE reaches the table) for every read of an apartment; the
-- first free night (apartment_available_from) is read apart, for the apartments asked for.
CREATE FUNCTION apartments_on(day date)
RETURNS TABLE (id text, apartment_number text, building_id text, tenant_id text,
               caretaker_id text, apartment_type text, apartment_status text, kitchen boolean,
               number_of_rooms integer, monthly_rent bigint, currency char(3),
               created_on timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT a.id, a.apartment_number, a.building_id,
           CASE WHEN t.booking_status IS NULL THEN a.tenant_id
                WHEN t.booking_status = 'APPROVED' THEN t.user_id END,
           a.caretaker_id, a.apartment_type,
           CASE t.booking_status WHEN 'APPROVED' THEN 'OCCUPIED'
                                 WHEN 'PENDING' THEN 'RESERVED'
                                 ELSE a.apartment_status END,
           a.kitchen, a.number_of_rooms, a.monthly_rent, a.currency, a.created_on
      FROM apartments a
      LEFT JOIN LATERAL (
          SELECT b.booking_status, b.user_id
            FROM bookings b
           WHERE b.apartment_id = a.id AND b.stay @> day
             AND (b.booking_status = 'PENDING'
                  OR (b.booking_status = 'APPROVED' AND b.lease_ended_at IS NULL))
           LIMIT 1) t ON true
$$;

-- 0003: bookings. No two confirmed bookings of a space overlap: the exclusion constraint is
-- the final word, whatever races between workers or machines.
CREATE TYPE booking_status AS ENUM ('pending', 'confirmed', 'declined', 'cancelled');

CREATE TABLE bookings (
  id              bigserial PRIMARY KEY,
  -- A client with bookings cannot be deleted (money history); a space is only soft-deleted.
  client_id       bigint         NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
  space_id        bigint         NOT NULL REFERENCES spaces (id) ON DELETE RESTRICT,
  start_at        timestamptz    NOT NULL,
  end_at          timestamptz    NOT NULL,
  guests          integer        NOT NULL DEFAULT 1,
  notes           text,
  status          booking_status NOT NULL DEFAULT 'pending',
  currency        char(3)        NOT NULL,
  subtotal_minor  bigint         NOT NULL,
  tax_minor       bigint         NOT NULL,
  total_minor     bigint         NOT NULL,
  price_breakdown jsonb          NOT NULL DEFAULT '{}',
  decline_reason  text,
  cancelled_at    timestamptz,
  refund_minor    bigint,
  created_at      timestamptz    NOT NULL DEFAULT now(),
  updated_at      timestamptz    NOT NULL DEFAULT now(),
  CONSTRAINT bookings_period_check CHECK (end_at > start_at),
  CONSTRAINT bookings_guests_check CHECK (guests > 0),
  CONSTRAINT bookings_amounts_check CHECK (subtotal_minor >= 0 AND tax_minor >= 0
                                           AND total_minor >= 0),
  CONSTRAINT bookings_refund_check CHECK (refund_minor IS NULL OR refund_minor BETWEEN 0 AND total_minor),
  CONSTRAINT bookings_slot_excl EXCLUDE USING gist (
    space_id WITH =, tstzrange(start_at, end_at) WITH &&
  ) WHERE (status = 'confirmed')
);

CREATE INDEX bookings_client_idx ON bookings (client_id, created_at DESC, id DESC);
CREATE INDEX bookings_space_status_idx ON bookings (space_id, status, start_at);
CREATE INDEX bookings_status_idx ON bookings (status, created_at DESC);
-- Pending requests that overlap a slot being confirmed (declined in the same transaction).
CREATE INDEX bookings_pending_slot_idx ON bookings USING gist (space_id, tstzrange(start_at, end_at))
  WHERE status = 'pending';

CREATE TRIGGER bookings_updated_at BEFORE UPDATE ON bookings
  FOR EACH ROW EXECUTE FUNCTION set_updated_at();

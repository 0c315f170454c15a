-- 0006: the schema's decisions, written where psql's \d+ shows them. 0001-0005 are applied
-- and never edited, so the reasons their comments left out are recorded here.
--
-- Deletion: history is kept. A user with spaces, bookings, payments or invoices cannot be
-- deleted (RESTRICT: the API answers 409); a space is never deleted but soft-deleted
-- (deleted_at), so past bookings, payments and invoices stay readable. Only what is useless
-- without its user goes with it: idempotency keys (CASCADE). Login attempts have no foreign
-- key at all: they name whatever email was typed.
--
-- Booking rules (minimum notice, minimum and maximum duration) are not columns of spaces:
-- they live in spacer.conf [bookings], read by scripts/booking_flow.lua, so an operator
-- changes them without a migration. A per-space override would be a new nullable column.

COMMENT ON TABLE users IS
  'People. email is citext (unique without regard to case); role is client, owner or admin.';
COMMENT ON TABLE spaces IS
  'Event spaces. Soft-deleted (deleted_at), never deleted: their bookings, payments and '
  'invoices stay readable. Booking rules (notice, durations) are in spacer.conf [bookings].';
COMMENT ON COLUMN spaces.deleted_at IS
  'Set when the owner removes the space; NULL while listed. Rows are never deleted.';
COMMENT ON COLUMN spaces.search IS
  'Full-text search over title (weight A), location (B) and description (C), simple config.';
COMMENT ON COLUMN spaces.price_per_hour_minor IS 'Minor units of currency (KES 500.00 = 50000).';
COMMENT ON COLUMN spaces.price_per_day_minor IS 'Minor units of currency; 0 means no day rate.';

COMMENT ON TABLE bookings IS
  'Requests and confirmed bookings. The price (subtotal, tax, total, price_breakdown) is '
  'fixed when the booking is created: a later pricing change never rewrites it.';
COMMENT ON CONSTRAINT bookings_slot_excl ON bookings IS
  'No two confirmed bookings of one space overlap ([start_at, end_at): touching is fine).';

COMMENT ON TABLE invoice_counters IS
  'Gapless invoice numbers per year: the issuing transaction takes the next one with '
  'INSERT ... ON CONFLICT (year) DO UPDATE ... RETURNING (a row lock, not a sequence).';

COMMENT ON CONSTRAINT spaces_owner_id_fkey ON spaces IS
  'RESTRICT: an owner with spaces (even removed ones) keeps them and their history.';
COMMENT ON CONSTRAINT bookings_client_id_fkey ON bookings IS
  'RESTRICT: a client with bookings cannot be deleted (money history).';
COMMENT ON CONSTRAINT bookings_space_id_fkey ON bookings IS
  'RESTRICT: spaces are soft-deleted, so this only stops a mistaken hard DELETE.';
COMMENT ON CONSTRAINT payments_booking_id_fkey ON payments IS
  'RESTRICT: payments are money history.';
COMMENT ON CONSTRAINT payments_client_id_fkey ON payments IS
  'RESTRICT: payments are money history.';
COMMENT ON CONSTRAINT invoices_booking_id_fkey ON invoices IS
  'RESTRICT: an issued invoice number must stay (gapless numbering).';
COMMENT ON CONSTRAINT invoices_payment_id_fkey ON invoices IS
  'RESTRICT: an invoice keeps the payment that paid it.';
COMMENT ON CONSTRAINT invoices_client_id_fkey ON invoices IS
  'RESTRICT: an issued invoice number must stay (gapless numbering).';
COMMENT ON CONSTRAINT idempotency_keys_client_id_fkey ON idempotency_keys IS
  'CASCADE: stored responses are useless without their user.';

-- 0007: an owner's bookings list includes bookings of spaces they have removed, which the
-- partial spaces_owner_idx (deleted_at IS NULL) cannot serve.
CREATE INDEX spaces_owner_all_idx ON spaces (owner_id);

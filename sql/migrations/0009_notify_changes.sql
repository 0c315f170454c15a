-- 0009: every committed change to spaces, bookings or users is announced on the channel
-- spacer_changes with the table's name as payload, so each Spacer instance drops what it
-- cached from that table (public lists, one space, availability, the users behind tokens).
-- One notification per statement (not per row); PostgreSQL folds identical notifications
-- of one transaction into one and delivers them only at commit.
CREATE FUNCTION spacer_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('spacer_changes', TG_TABLE_NAME);
  RETURN NULL;
END
$$;

CREATE TRIGGER spaces_notify_change
  AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON spaces
  FOR EACH STATEMENT EXECUTE FUNCTION spacer_notify_change();

CREATE TRIGGER bookings_notify_change
  AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON bookings
  FOR EACH STATEMENT EXECUTE FUNCTION spacer_notify_change();

CREATE TRIGGER users_notify_change
  AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON users
  FOR EACH STATEMENT EXECUTE FUNCTION spacer_notify_change();

-- 0002: event spaces. Money in minor units plus a currency; a space is soft-deleted
-- (deleted_at) so past bookings, payments and invoices stay readable after removal.
CREATE TABLE spaces (
  id                    bigserial PRIMARY KEY,
  -- An owner with spaces cannot be deleted: their spaces carry bookings and money history.
  owner_id              bigint      NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
  title                 text        NOT NULL,
  description           text        NOT NULL,
  location              text        NOT NULL,
  capacity              integer     NOT NULL,
  amenities             text[]      NOT NULL DEFAULT '{}',
  price_per_hour_minor  bigint      NOT NULL,
  price_per_day_minor   bigint      NOT NULL,
  currency              char(3)     NOT NULL DEFAULT 'KES',
  timezone              text        NOT NULL DEFAULT 'Africa/Nairobi',
  is_available          boolean     NOT NULL DEFAULT true,
  instant_book          boolean     NOT NULL DEFAULT false,
  main_image_url        text,
  created_at            timestamptz NOT NULL DEFAULT now(),
  updated_at            timestamptz NOT NULL DEFAULT now(),
  deleted_at            timestamptz,
  search                tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('simple', coalesce(title, '')), 'A') ||
    setweight(to_tsvector('simple', coalesce(location, '')), 'B') ||
    setweight(to_tsvector('simple', coalesce(description, '')), 'C')
  ) STORED,
  CONSTRAINT spaces_capacity_check CHECK (capacity > 0),
  CONSTRAINT spaces_price_per_hour_check CHECK (price_per_hour_minor >= 0),
  CONSTRAINT spaces_price_per_day_check CHECK (price_per_day_minor >= 0),
  CONSTRAINT spaces_currency_check CHECK (currency ~ '^[A-Z]{3}$'),
  CONSTRAINT spaces_title_check CHECK (length(btrim(title)) BETWEEN 1 AND 200)
);

-- The public list: available, not deleted, newest first.
CREATE INDEX spaces_listing_idx ON spaces (created_at DESC, id DESC)
  WHERE is_available AND deleted_at IS NULL;
CREATE INDEX spaces_owner_idx ON spaces (owner_id, created_at DESC) WHERE deleted_at IS NULL;
CREATE INDEX spaces_search_idx ON spaces USING gin (search);
CREATE INDEX spaces_location_idx ON spaces (lower(location) text_pattern_ops);
CREATE INDEX spaces_capacity_idx ON spaces (capacity) WHERE deleted_at IS NULL;
CREATE INDEX spaces_price_idx ON spaces (price_per_hour_minor) WHERE deleted_at IS NULL;

CREATE TRIGGER spaces_updated_at BEFORE UPDATE ON spaces
  FOR EACH ROW EXECUTE FUNCTION set_updated_at();

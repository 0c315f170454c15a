-- 0001: people. Email is unique without regard to case (citext); the role is an enum.
CREATE EXTENSION IF NOT EXISTS citext;
CREATE EXTENSION IF NOT EXISTS btree_gist;

-- Keeps updated_at honest on every UPDATE, whatever the script forgot.
CREATE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END;
$$;

CREATE TYPE user_role AS ENUM ('client', 'owner', 'admin');

CREATE TABLE users (
  id            bigserial PRIMARY KEY,
  name          text        NOT NULL,
  email         citext      NOT NULL,
  password_hash text        NOT NULL,
  role          user_role   NOT NULL DEFAULT 'client',
  is_verified   boolean     NOT NULL DEFAULT false,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT users_email_key UNIQUE (email),
  CONSTRAINT users_name_check CHECK (length(btrim(name)) BETWEEN 1 AND 200),
  CONSTRAINT users_email_check CHECK (email ~ '^[^@[:space:]]+@[^@[:space:]]+\.[^@[:space:]]+$')
);

CREATE INDEX users_role_idx ON users (role);
CREATE INDEX users_created_idx ON users (created_at, id);

CREATE TRIGGER users_updated_at BEFORE UPDATE ON users
  FOR EACH ROW EXECUTE FUNCTION set_updated_at();

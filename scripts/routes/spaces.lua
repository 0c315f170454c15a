-- routes/spaces.lua: event spaces. The public list (search and filters), one space, an
-- owner's own spaces, busy intervals, price quotes, and the owners' create, update and
-- (soft) delete; on the canonical /api/spaces/spaces... paths and the old web app's
-- /api/spaces... paths.
--
-- Every list page is one SQL statement (spaces.paged_sql): the page, found through the
-- ordering index and cut by LIMIT, and the total, counted without carrying whole rows, in
-- two CTEs of one query (4 times the throughput of count(*) OVER (), which materialises every
-- matching row before the LIMIT). The optional filters are parameters of one constant
-- statement ($n IS NULL OR ...), so each statement is prepared once per connection.
--
-- What a space looks like in JSON is said once, by the select list of space_columns: the
-- core writes the rows straight to JSON (spacer.db.json), so the rows of a list never become
-- Lua tables (which cost about 10 us of worker CPU per row).
--
-- Prices are integer minor units in the database and decimal major units in JSON. A time
-- without an offset is read in the space's own zone (in the list's availability filter: in
-- each space's zone).
local api = require("lib.api")
local auth = require("lib.auth")
local money = require("lib.money")
local openapi = require("lib.openapi")
local flow = require("booking_flow")

local _M = {}

local db = spacer.db
local json = spacer.json
local NULL = json.null

local DEFAULT_CURRENCY = "KES"
local MAX_AVAILABILITY_DAYS = 366
local DEFAULT_AVAILABILITY_DAYS = 30

-- Currencies whose minor unit is not the hundredth (see lib/money.lua), for the price filter
-- in SQL; checked against money.exponent when this file loads.
local ZERO_DECIMALS = { "UGX", "RWF", "BIF", "DJF", "XAF", "XOF", "JPY", "KRW", "CLP", "VND", "ISK" }
local THREE_DECIMALS = { "BHD", "KWD", "OMR", "JOD", "TND", "LYD", "IQD" }

local function sql_codes(codes, exponent)
  local quoted = {}
  for i, code in ipairs(codes) do
    assert(money.exponent(code) == exponent, "routes/spaces.lua: exponent of " .. code)
    quoted[i] = "'" .. code .. "'"
  end
  return table.concat(quoted, ", ")
end

-- The factor from a major amount to the space's minor units.
local MINOR_FACTOR = "(CASE WHEN s.currency IN (" .. sql_codes(ZERO_DECIMALS, 0) .. ") THEN 1"
  .. " WHEN s.currency IN (" .. sql_codes(THREE_DECIMALS, 3) .. ") THEN 1000 ELSE 100 END)"

-- SQL ------------------------------------------------------------------------------------

-- The currency's minor units per major unit of a spaces row s, as cur.factor.
local CURRENCY = "CROSS JOIN LATERAL (SELECT " .. MINOR_FACTOR .. " AS factor) cur"

-- A space as the API shows it: the select list over a spaces row s is the JSON object
-- (spacer.db.json: each column a key; floats keep their ".0", as money.to_major's do).
-- compat: amenities as one comma-separated string (the old web app calls
-- amenities.split(',')), else an array. factor: the currency's factor (cur.factor with
-- CURRENCY; MINOR_FACTOR where a lateral join cannot go, as in RETURNING).
local function space_columns(compat, factor)
  factor = factor or "cur.factor"
  return [[
  s.id, s.owner_id, s.title, s.description, s.location, s.capacity,
  ]] .. (compat and "array_to_string(s.amenities, ',')" or "s.amenities") .. [[ AS amenities,
  s.price_per_hour_minor::float8 / ]] .. factor .. [[ AS price_per_hour,
  s.price_per_day_minor::float8 / ]] .. factor .. [[ AS price_per_day,
  s.currency, s.timezone, s.is_available, s.main_image_url, s.instant_book, s.created_at,
  s.updated_at]]
end

-- Statements that show spaces come in two: [false] canonical, [true] for the old web app.
local function both(make)
  return { [false] = make(false), [true] = make(true) }
end

-- The public list's filters: $1 q (full-text, websearch syntax), $2 location (an ILIKE
-- pattern), $3 min_capacity, $4 max_price_per_hour (major units, in each space's currency),
-- $5/$6 available_from (epoch, or local text read in the space's zone), $7/$8 available_to.
local PUBLIC_WHERE = [[
  WHERE s.is_available AND s.deleted_at IS NULL
    AND ($1::text IS NULL OR s.search @@ websearch_to_tsquery('simple', $1::text))
    AND ($2::text IS NULL OR s.location ILIKE $2::text)
    AND ($3::int IS NULL OR s.capacity >= $3::int)
    AND ($4::numeric IS NULL OR s.price_per_hour_minor <= $4::numeric * ]] .. MINOR_FACTOR .. [[)
    AND (($5::float8 IS NULL AND $6::text IS NULL) OR NOT EXISTS (
      SELECT 1 FROM bookings b
      WHERE b.space_id = s.id AND b.status = 'confirmed'
        AND b.start_at < COALESCE(to_timestamp($7::float8), $8::timestamp AT TIME ZONE s.timezone)
        AND b.end_at > COALESCE(to_timestamp($5::float8), $6::timestamp AT TIME ZONE s.timezone)))
]]

-- spaces.paged_sql(p) -> one constant statement answering a page and the total:
--   p.select, p.from, p.where, p.order   the page: SELECT select FROM from where ORDER BY order
--   p.count_from (default p.from)        the FROM of the count (same where)
--   p.outer_order                        p.order in terms of the page's output columns
--   p.n                                  the number of filter parameters: LIMIT is $n+1,
--                                        OFFSET $n+2
--   p.total (default "total")            the name of the total's column
-- Every answer has at least one row: past the last page, a row whose page columns are NULL
-- (spaces.page_of drops it), so the total is always there.
function _M.paged_sql(p)
  return string.format([[
    WITH page AS (SELECT %s FROM %s %s ORDER BY %s LIMIT $%d OFFSET $%d),
         counted AS (SELECT count(*) AS total FROM %s %s)
    SELECT page.*, counted.total AS %s FROM counted LEFT JOIN page ON true ORDER BY %s]],
    p.select, p.from, p.where, p.order, p.n + 1, p.n + 2, p.count_from or p.from, p.where,
    p.total or "total", p.outer_order)
end

-- Lists answer the page's rows and the total as _total (spaces.page_json).
local LIST_PUBLIC = both(function(compat)
  return _M.paged_sql({
    select = space_columns(compat),
    from = "spaces s " .. CURRENCY,
    count_from = "spaces s",
    where = PUBLIC_WHERE,
    order = "s.created_at DESC, s.id DESC",
    outer_order = "page.created_at DESC, page.id DESC",
    total = "_total",
    n = 8,
  })
end)

local LIST_MINE = both(function(compat)
  return _M.paged_sql({
    select = space_columns(compat),
    from = "spaces s " .. CURRENCY,
    count_from = "spaces s",
    where = "WHERE s.owner_id = $1 AND s.deleted_at IS NULL",
    order = "s.created_at DESC, s.id DESC",
    outer_order = "page.created_at DESC, page.id DESC",
    total = "_total",
    n = 1,
  })
end)

local SPACE_WITH_OWNER = both(function(compat)
  return "SELECT " .. space_columns(compat) .. [[,
      s.owner_id AS "owner.id", u.name AS "owner.name"
    FROM spaces s JOIN users u ON u.id = s.owner_id ]] .. CURRENCY .. [[
    WHERE s.id = $1 AND s.deleted_at IS NULL]]
end)

local SPACE_FOR_CHANGE = [[
  SELECT id, owner_id, currency, timezone FROM spaces WHERE id = $1 AND deleted_at IS NULL]]

local SPACE_BRIEF = [[
  SELECT id, timezone, price_per_hour_minor, price_per_day_minor, currency
  FROM spaces WHERE id = $1 AND deleted_at IS NULL]]

local OWNER_ROLE = "SELECT role::text AS role FROM users WHERE id = $1"

local INSERT_SPACE = both(function(compat)
  return [[
  INSERT INTO spaces AS s (owner_id, title, description, location, capacity, amenities,
                           price_per_hour_minor, price_per_day_minor, currency, timezone,
                           is_available, instant_book, main_image_url)
  VALUES ($1, $2, $3, $4, $5, ARRAY(SELECT jsonb_array_elements_text($6::jsonb)), $7, $8, $9,
          $10, $11, $12, $13)
  RETURNING ]] .. space_columns(compat, MINOR_FACTOR)
end)

-- NULL keeps a column; main_image_url is set when $14 is true (it may be set to NULL).
local UPDATE_SPACE = both(function(compat)
  return [[
  UPDATE spaces AS s SET
    title = COALESCE($2, s.title),
    description = COALESCE($3, s.description),
    location = COALESCE($4, s.location),
    capacity = COALESCE($5, s.capacity),
    amenities = CASE WHEN $6::jsonb IS NULL THEN s.amenities
                     ELSE ARRAY(SELECT jsonb_array_elements_text($6::jsonb)) END,
    price_per_hour_minor = COALESCE($7, s.price_per_hour_minor),
    price_per_day_minor = COALESCE($8, s.price_per_day_minor),
    currency = COALESCE($9, s.currency),
    timezone = COALESCE($10, s.timezone),
    is_available = COALESCE($11, s.is_available),
    instant_book = COALESCE($12, s.instant_book),
    main_image_url = CASE WHEN $14::bool THEN $13 ELSE s.main_image_url END,
    owner_id = COALESCE($15, s.owner_id)
  WHERE s.id = $1 AND s.deleted_at IS NULL
  RETURNING ]] .. space_columns(compat, MINOR_FACTOR)
end)

local LOCK_FOR_DELETE = [[
  SELECT owner_id FROM spaces WHERE id = $1 AND deleted_at IS NULL FOR UPDATE]]

-- A confirmed booking that has not ended yet.
local FUTURE_CONFIRMED = [[
  SELECT id, count(*) OVER () AS total FROM bookings
  WHERE space_id = $1 AND status = 'confirmed' AND end_at > now()
  ORDER BY start_at LIMIT 1]]

local SOFT_DELETE = "UPDATE spaces SET deleted_at = now() WHERE id = $1"

-- $1 space, $2/$3 the window (epochs).
local BUSY = _M.paged_sql({
  select = [[extract(epoch FROM b.start_at)::bigint AS start_s,
             extract(epoch FROM b.end_at)::bigint AS end_s]],
  from = "bookings b",
  where = [[WHERE b.space_id = $1 AND b.status = 'confirmed'
              AND b.start_at < to_timestamp($3) AND b.end_at > to_timestamp($2)]],
  order = "b.start_at",
  outer_order = "page.start_s",
  n = 3,
})

-- Lists: one statement per page -----------------------------------------------------------

-- spaces.page_of(req, pager, sql, args, n, shape[, key]) -> 200, array, headers
-- Runs a statement of spaces.paged_sql with args ($1..$n) and the pager's LIMIT and OFFSET,
-- and answers as api.list. key: a page column that is never NULL in a real row ("id").
function _M.page_of(req, pager, sql, args, n, shape, key)
  local params = { table.unpack(args, 1, n) }
  params[n + 1] = pager.limit
  params[n + 2] = pager.offset
  local rows = db.query(sql, table.unpack(params, 1, n + 2))
  local total = rows[1] and rows[1].total or 0
  if rows[1] and rows[1][key or "id"] == NULL then
    rows = {}
  end
  return api.list(req, pager, rows, total, shape)
end

-- spaces.page_json(req, pager, sql, args, n[, shapers]) -> 200, raw JSON array, headers
-- Like page_of for a statement of spaces.paged_sql whose total is _total: the rows go to
-- JSON as the select list says (spacer.db.json; with shapers, spacer.db.json_with), never
-- through Lua tables.
function _M.page_json(req, pager, sql, args, n, shapers)
  local params = { table.unpack(args, 1, n) }
  params[n + 1] = pager.limit
  params[n + 2] = pager.offset
  local rows, meta
  if shapers then
    rows, meta = db.json_with(shapers, sql, table.unpack(params, 1, n + 2))
  else
    rows, meta = db.json(sql, table.unpack(params, 1, n + 2))
  end
  return 200, rows, api.list_headers(req, pager, meta.total or 0)
end

-- Shapes -----------------------------------------------------------------------------------

-- Validation -------------------------------------------------------------------------------

local function currency_code(value)
  if not value:match("^%a%a%a$") then
    return "must be a three-letter currency code like KES"
  end
  return nil
end

local function time_zone(value)
  if not spacer.time.valid_zone(value) then
    return "must be a time zone like Africa/Nairobi"
  end
  return nil
end

local function no_comma(value)
  if value:find(",", 1, true) then
    return "must not contain a comma"
  end
  return nil
end

-- An http(s) URL or a relative one (the web app may store upload paths); never another
-- scheme (javascript:, data:) that a page would follow.
local function image_url(value)
  local scheme = value:match("^(%a[%w+.-]*):")
  if scheme and scheme:lower() ~= "http" and scheme:lower() ~= "https" then
    return "must be an http(s) URL"
  end
  if value:find("%s") then
    return "must be a URL without spaces"
  end
  return nil
end

local READONLY = { readonly = true }

-- Prices are read as numbers here and turned into minor units of the space's currency by
-- the handler (the currency may come from the body or from the space).
local SPACE_BODY = {
  title = { type = "string", required = true, max_length = 200 },
  description = { type = "string", required = true, max_length = 10000 },
  location = { type = "string", required = true, max_length = 200 },
  capacity = { type = "integer", required = true, min = 1, max = 1000000 },
  amenities = {
    type = "array",
    split = ",",
    max_length = 100,
    items = { type = "string", min_length = 1, max_length = 100, check = no_comma },
  },
  price_per_hour = { type = "number", required = true, min = 0 },
  price_per_day = { type = "number", required = true, min = 0 },
  currency = { type = "string", check = currency_code },
  timezone = { type = "string", check = time_zone },
  is_available = { type = "boolean", default = true },
  instant_book = { type = "boolean", default = false },
  main_image_url = { type = "string", nullable = true, max_length = 2048, check = image_url },
  -- an admin may give a space to an owner; for owners it is read-only (checked below)
  owner_id = { type = "integer", min = 1 },
  id = READONLY,
  created_at = READONLY,
  updated_at = READONLY,
  deleted_at = READONLY,
}

-- (description: for the OpenAPI document only)
local LIST_FILTERS = {
  q = { type = "string", max_length = 200,
    description = "full-text search of title, description and location (web search syntax)" },
  location = { type = "string", max_length = 200,
    description = "a part of the location, in any case" },
  min_capacity = { type = "integer", min = 0, max = 1000000,
    description = "at least this many guests" },
  max_price_per_hour = { type = "number", min = 0,
    description = "at most this hourly price, in each space's currency" },
  available_from = { type = "datetime", description = "with available_to: no confirmed "
    .. "booking overlaps the window (without an offset: each space's local time)" },
  available_to = { type = "datetime", description = "with available_from: the window's end" },
}

local WINDOW = {
  from = { type = "datetime", description = "the window's start (default: now)" },
  to = { type = "datetime", description = "the window's end (default: 30 days after from)" },
}

local QUOTE_QUERY = {
  start = { type = "datetime", required = true, description = "the booking's start" },
  ["end"] = { type = "datetime", required = true, description = "the booking's end" },
}

-- "2026-12-01T10:00" has no offset; "...Z", "...+03:00", "...-0500" have one.
local function has_offset(text)
  local clock = text:match("[Tt ](.*)$") or ""
  return clock:find("[Zz+-]") ~= nil
end

-- A query time: (epoch, nil) with an offset, (nil, local text) without one, and the epoch
-- in the default zone to compare the two ends. Raises 422 naming the field when unreadable.
local function query_time(name, text, zone)
  local epoch, err = spacer.time.parse(text, zone)
  if not epoch then
    api.fail({ [name] = err })
  end
  if has_offset(text) then
    return epoch, nil, epoch
  end
  return nil, text, epoch
end

local function blank_to_nil(s)
  if s == nil or s == "" then
    return nil
  end
  return s
end

-- "%", "_" and "\" taken literally in an ILIKE pattern.
local function like_pattern(text)
  return "%" .. text:gsub("[\\%%_]", "\\%0") .. "%"
end

local function minor(value, currency, field)
  local n, err = money.parse(value, currency)
  if not n then
    api.fail({ [field] = err })
  end
  return n
end

local function is_admin(req)
  return auth.is_admin(req.user)
end

-- owner_id in a body: an admin's to give (to an owner or admin); ignored on compatibility
-- paths (the web app sends the space back whole); for anyone else a 422.
local function owner_from_body(req, body)
  local owner_id = body.owner_id
  if owner_id == nil or req.compat then
    return nil
  end
  if not is_admin(req) then
    api.fail({ owner_id = "may not be set" })
  end
  local row = db.one(OWNER_ROLE, owner_id)
  if not row or (row.role ~= "owner" and row.role ~= "admin") then
    api.fail({ owner_id = "must be the id of an owner" })
  end
  return owner_id
end

local function find_space(id)
  local row = db.one(SPACE_FOR_CHANGE, id)
  if not row then
    api.not_found("space")
  end
  return row
end

local function check_owner(req, space)
  if space.owner_id ~= req.user.id and not is_admin(req) then
    spacer.error(403, "this space belongs to another owner", "forbidden")
  end
end

local function sanitise_image(value)
  if value == "" then
    return NULL
  end
  return value
end

-- Handlers ---------------------------------------------------------------------------------

function _M.list(req)
  local f, pager = api.list_params(req, LIST_FILTERS)
  local zone = flow.SETTINGS.default_timezone
  local from_epoch, from_text, from_cmp, to_epoch, to_text, to_cmp
  if f.available_from or f.available_to then
    local fields = {}
    if not f.available_from then
      fields.available_from = "is required with available_to"
    end
    if not f.available_to then
      fields.available_to = "is required with available_from"
    end
    if next(fields) then
      api.fail(fields)
    end
    from_epoch, from_text, from_cmp = query_time("available_from", f.available_from, zone)
    to_epoch, to_text, to_cmp = query_time("available_to", f.available_to, zone)
    if to_cmp <= from_cmp then
      api.fail({ available_to = "must be after available_from" })
    end
  end
  local q = blank_to_nil(f.q)
  local location = blank_to_nil(f.location)
  return _M.page_json(req, pager, LIST_PUBLIC[req.compat], {
    q,
    location and like_pattern(location),
    f.min_capacity,
    f.max_price_per_hour,
    from_epoch, from_text, to_epoch, to_text,
  }, 8)
end

function _M.mine(req)
  local _, pager = api.list_params(req, nil)
  return _M.page_json(req, pager, LIST_MINE[req.compat], { req.user.id }, 1)
end

function _M.show(req)
  local space = db.json_one(SPACE_WITH_OWNER[req.compat], req.params.id)
  if not space then
    api.not_found("space")
  end
  return 200, space
end

function _M.create(req)
  local body = req.body
  local owner_id = owner_from_body(req, body) or req.user.id
  local currency = body.currency and body.currency:upper() or DEFAULT_CURRENCY
  local per_hour = minor(body.price_per_hour, currency, "price_per_hour")
  local per_day = minor(body.price_per_day, currency, "price_per_day")
  local space = db.json_one(INSERT_SPACE[req.compat], owner_id, body.title, body.description, body.location,
    body.capacity, json.array(body.amenities or {}), per_hour, per_day, currency,
    body.timezone or flow.SETTINGS.default_timezone, body.is_available, body.instant_book,
    sanitise_image(body.main_image_url))
  spacer.cache.touch("spaces")
  return 201, { message = "Space created successfully", space = space }
end

function _M.update(req)
  local body = req.body
  local current = find_space(req.params.id)
  check_owner(req, current)
  local owner_id = owner_from_body(req, body)
  local currency = body.currency and body.currency:upper() or current.currency
  local per_hour, per_day
  if body.price_per_hour ~= nil then
    per_hour = minor(body.price_per_hour, currency, "price_per_hour")
  end
  if body.price_per_day ~= nil then
    per_day = minor(body.price_per_day, currency, "price_per_day")
  end
  -- Prices are minor units: a currency with another minor unit needs them restated.
  if money.exponent(currency) ~= money.exponent(current.currency) then
    local fields = {}
    if per_hour == nil then
      fields.price_per_hour = "is required when the currency changes to " .. currency
    end
    if per_day == nil then
      fields.price_per_day = "is required when the currency changes to " .. currency
    end
    if next(fields) then
      api.fail(fields)
    end
  end
  local image = body.main_image_url
  local space = db.json_one(UPDATE_SPACE[req.compat], current.id, body.title, body.description,
    body.location, body.capacity, body.amenities and json.array(body.amenities) or nil,
    per_hour, per_day, body.currency and currency or nil, body.timezone, body.is_available,
    body.instant_book, image ~= nil and sanitise_image(image) or nil, image ~= nil, owner_id)
  spacer.cache.touch("spaces")
  if not space then
    api.not_found("space")
  end
  return 200, { message = "Space updated successfully", space = space }
end

function _M.delete(req)
  local id = req.params.id
  db.tx(function()
    local space = db.one(LOCK_FOR_DELETE, id)
    if not space then
      api.not_found("space")
    end
    check_owner(req, space)
    local busy = db.one(FUTURE_CONFIRMED, id)
    if busy then
      spacer.error(409, "this space has " .. busy.total .. " confirmed booking(s) still to come;"
        .. " cancel them first", {
        code = "space_has_bookings",
        extra = { booking_id = busy.id, future_confirmed_bookings = busy.total },
      })
    end
    db.exec(flow.DECLINE_PENDING_OF_SPACE, id, flow.SETTINGS.decline_reason_on_space_removed)
    db.exec(SOFT_DELETE, id)
  end)
  spacer.cache.touch("spaces", "bookings")
  return 200, { message = "Space deleted successfully" }
end

function _M.availability(req)
  local space = db.one(SPACE_BRIEF, req.params.id)
  if not space then
    api.not_found("space")
  end
  local w, pager = api.list_params(req, WINDOW)
  local zone = space.timezone
  local now = spacer.time.now()
  local from_s, to_s, err
  if w.from then
    from_s, err = spacer.time.parse(w.from, zone)
    if not from_s then
      api.fail({ from = err })
    end
  else
    from_s = now
  end
  if w.to then
    to_s, err = spacer.time.parse(w.to, zone)
    if not to_s then
      api.fail({ to = err })
    end
  else
    to_s = from_s + DEFAULT_AVAILABILITY_DAYS * 86400
  end
  if to_s <= from_s then
    api.fail({ to = "must be after from" })
  end
  if to_s - from_s > MAX_AVAILABILITY_DAYS * 86400 then
    api.fail({ to = "must be at most " .. MAX_AVAILABILITY_DAYS .. " days after from" })
  end
  local format = spacer.time.format
  return _M.page_of(req, pager, BUSY, { space.id, from_s, to_s }, 3, function(row)
    return { start = format(row.start_s, zone), ["end"] = format(row.end_s, zone) }
  end, "start_s")
end

function _M.quote(req)
  local space = db.one(SPACE_BRIEF, req.params.id)
  if not space then
    api.not_found("space")
  end
  local t = api.query(req, QUOTE_QUERY)
  local zone = space.timezone
  local start_s, err = spacer.time.parse(t.start, zone)
  if not start_s then
    api.fail({ start = err })
  end
  local end_s
  end_s, err = spacer.time.parse(t["end"], zone)
  if not end_s then
    api.fail({ ["end"] = err })
  end
  if end_s <= start_s then
    api.fail({ ["end"] = "must be after start" })
  end
  local quote
  quote, err = flow.quote(space, start_s, end_s)
  if not quote then
    error(err)
  end
  local out = flow.breakdown_major(quote)
  out.space_id = space.id
  out.start = spacer.time.format(start_s, zone)
  out["end"] = spacer.time.format(end_s, zone)
  return 200, out
end

-- Routes -----------------------------------------------------------------------------------

local compat = api.compat_path

local TAGS = { "spaces" }
local OWNERS = { "owner", "admin" }

-- The shapes of the answers, for the OpenAPI document (spaces.space, availability, quote).
local SPACE_FIELDS = {
  id = openapi.ID,
  owner_id = openapi.ID,
  title = openapi.STRING,
  description = openapi.STRING,
  location = openapi.STRING,
  capacity = openapi.INTEGER,
  amenities = {
    type = "array",
    items = openapi.STRING,
    description = "on the compatibility paths: one comma-separated string",
  },
  price_per_hour = openapi.AMOUNT,
  price_per_day = openapi.AMOUNT,
  currency = openapi.CURRENCY,
  timezone = { type = "string", example = "Africa/Nairobi" },
  is_available = openapi.BOOLEAN,
  main_image_url = openapi.TEXT_OR_NULL,
  instant_book = openapi.BOOLEAN,
  created_at = openapi.DATETIME,
  updated_at = openapi.DATETIME,
}
local SPACE_REQUIRED = { "id", "owner_id", "title", "description", "location", "capacity",
  "amenities", "price_per_hour", "price_per_day", "currency", "timezone", "is_available",
  "instant_book", "created_at", "updated_at" }
local SPACE = openapi.component("Space", openapi.object(SPACE_FIELDS, SPACE_REQUIRED))
local detail_fields = {}
for k, v in pairs(SPACE_FIELDS) do
  detail_fields[k] = v
end
detail_fields.owner = openapi.object({ id = openapi.ID, name = openapi.STRING }, { "id", "name" })
local SPACE_DETAIL = openapi.component("SpaceWithOwner", openapi.object(detail_fields,
  { "id", "owner_id", "title", "owner" }))
local MESSAGE_SPACE = openapi.object({ message = openapi.MESSAGE, space = SPACE },
  { "message", "space" })
local BUSY_INTERVAL = openapi.component("BusyInterval", openapi.object({
  start = openapi.DATETIME,
  ["end"] = openapi.DATETIME,
}, { "start", "end" }))
local QUOTE = openapi.component("Quote", openapi.object({
  space_id = openapi.ID,
  start = openapi.DATETIME,
  ["end"] = openapi.DATETIME,
  currency = openapi.CURRENCY,
  hours = openapi.NUMBER,
  lines = openapi.array(openapi.ref("PriceLine")),
  subtotal = openapi.AMOUNT,
  tax = openapi.AMOUNT,
  tax_rate_percent = openapi.NUMBER,
  total = openapi.AMOUNT,
}, { "currency", "lines", "subtotal", "tax", "total" }))
openapi.component("PriceLine", openapi.object({
  code = openapi.STRING,
  description = openapi.STRING,
  quantity = openapi.NUMBER,
  unit_amount = openapi.AMOUNT,
  amount = openapi.AMOUNT,
}, { "description", "amount" }))

spacer.get({ "/api/spaces/spaces", compat("/api/spaces") }, {
  cache = { "spaces", "bookings" }, -- the availability filter reads bookings
  summary = "Available spaces; filters q, location, min_capacity, max_price_per_hour, "
    .. "available_from, available_to; page, per_page",
  query = LIST_FILTERS,
  paged = true,
  result = SPACE,
  tags = TAGS,
}, _M.list)

spacer.get({ "/api/spaces/spaces/mine", compat("/api/spaces/my") }, {
  roles = OWNERS,
  etag = true,
  summary = "The caller's spaces, available or not",
  paged = true,
  result = SPACE,
  tags = TAGS,
}, _M.mine)

spacer.get({ "/api/spaces/spaces/{id}", compat("/api/spaces/{id}") }, {
  cache = { "spaces", "users" }, -- the owner's name
  summary = "One space, with its owner's id and name",
  result = SPACE_DETAIL,
  responses = { [404] = "no such space" },
  tags = TAGS,
}, _M.show)

spacer.get("/api/spaces/spaces/{id}/availability", {
  cache = { "spaces", "bookings" },
  summary = "Confirmed busy intervals between from and to (default: the next 30 days)",
  description = "from defaults to now, to to 30 days after from; at most "
    .. MAX_AVAILABILITY_DAYS .. " days. Times without an offset are read in the space's zone.",
  query = WINDOW,
  paged = true,
  result = BUSY_INTERVAL,
  responses = { [404] = "no such space" },
  tags = TAGS,
}, _M.availability)

spacer.get("/api/spaces/spaces/{id}/quote", {
  etag = true,
  summary = "What a booking from start to end would cost (nothing is booked)",
  query = QUOTE_QUERY,
  result = QUOTE,
  responses = { [404] = "no such space" },
  tags = TAGS,
}, _M.quote)

spacer.post({ "/api/spaces/spaces", compat("/api/spaces") }, {
  roles = OWNERS,
  body = SPACE_BODY,
  summary = "Create a space (owner, admin)",
  description = "owner_id: an admin may give the space to an owner; for an owner it is a 422.",
  status = 201,
  result = MESSAGE_SPACE,
  tags = TAGS,
}, _M.create)

local UPDATE = {
  roles = OWNERS,
  body = SPACE_BODY,
  partial = true,
  summary = "Change a space (its owner, admin)",
  result = MESSAGE_SPACE,
  responses = { [403] = "another owner's space", [404] = "no such space" },
  tags = TAGS,
}
spacer.patch({ "/api/spaces/spaces/{id}", compat("/api/spaces/{id}") }, UPDATE, _M.update)
spacer.put(compat("/api/spaces/{id}"), UPDATE, _M.update) -- the web app's Edit Space

spacer.delete({ "/api/spaces/spaces/{id}", compat("/api/spaces/{id}") }, {
  roles = OWNERS,
  summary = "Remove a space (its owner, admin); 409 while confirmed bookings are to come",
  result = openapi.ref("Message"),
  responses = { [403] = "another owner's space", [404] = "no such space",
    [409] = "the space has confirmed bookings still to come (space_has_bookings)" },
  tags = TAGS,
}, _M.delete)

return _M

-- routes/bookings.lua: booking requests and their answers, on the canonical
-- /api/bookings/bookings... paths and the old web app's /api/bookings, /api/owner/bookings
-- and /api/admin/bookings. The rules themselves live in scripts/booking_flow.lua.
--
-- Who sees what: a client their own bookings, an owner the bookings of their spaces, an
-- admin all. A booking that is not the caller's to see is a 404, as if it did not exist.
-- Times are shown with the offset of the space's zone; a time sent without an offset is read
-- in that zone.
local api = require("lib.api")
local auth = require("lib.auth")
local money = require("lib.money")
local openapi = require("lib.openapi")
local flow = require("booking_flow")
local payment_flow = require("payment_flow")
local spaces = require("routes.spaces")

local _M = {}

local db = spacer.db
local json = spacer.json
local time = spacer.time

-- SQL ------------------------------------------------------------------------------------

-- A booking as the API shows it, as a select list over bookings b and spaces s for
-- spacer.db.json (lists write their rows straight to JSON); the times (epoch and zone) and
-- the price breakdown go through SHAPERS. It is the shape of _M.booking below, which shows
-- the rows the booking flow returns: change both together (tests/api/test_cache.py compares
-- them). (Formatting the times in SQL costs PostgreSQL more than it saves here.)
local BOOKING_JSON = [[
  b.id, b.client_id, b.space_id,
  ARRAY[extract(epoch FROM b.start_at)::bigint::text, s.timezone] AS start_datetime,
  ARRAY[extract(epoch FROM b.end_at)::bigint::text, s.timezone] AS end_datetime,
  (extract(epoch FROM b.end_at)::bigint - extract(epoch FROM b.start_at)::bigint)::float8
    / 3600 AS duration_hours,
  b.guests, b.notes,
  b.total_minor::float8 / ]] .. money.sql_factor("b.currency") .. [[ AS total_price,
  b.currency,
  ]] .. money.sql_factor("b.currency") .. [[ || ' ' ||
    (CASE WHEN b.price_breakdown ? 'currency' THEN b.price_breakdown
          ELSE b.price_breakdown || jsonb_build_object('currency', b.currency) END)::text
    AS price_breakdown,
  b.status::text AS status, b.decline_reason, b.created_at, b.updated_at,
  b.space_id AS "space.id", s.title AS "space.title", s.location AS "space.location",
  s.main_image_url AS "space.main_image_url"]]

-- Each shaper gets a column's value (an array's elements as its arguments) and answers what
-- the JSON shows: time.format(epoch, zone) -> "2026-12-01T10:00:00+03:00"; "100 {...}", the
-- factor of the booking's currency and the stored breakdown's text -> the breakdown in major
-- units, as flow.breakdown_major shows it (both run in C, without a Lua call per row).
local SHAPERS = {
  start_datetime = time.format,
  end_datetime = time.format,
  price_breakdown = json.scaler(flow.BREAKDOWN_AMOUNTS),
}

-- One statement per page (spaces.paged_sql): $1 the client or owner (admin: none), then the
-- status filter or NULL; LIMIT and OFFSET follow. Newest first, through bookings_client_idx
-- for a client.
local function list_sql(where, n, count_from)
  return spaces.paged_sql({
    select = BOOKING_JSON,
    from = "bookings b JOIN spaces s ON s.id = b.space_id",
    count_from = count_from,
    where = where,
    order = "b.created_at DESC, b.id DESC",
    outer_order = "page.created_at DESC, page.id DESC",
    total = "_total",
    n = n,
  })
end

local LIST_OF_CLIENT = list_sql([[
  WHERE b.client_id = $1 AND ($2::booking_status IS NULL OR b.status = $2::booking_status)]],
  2, "bookings b")

local LIST_OF_OWNER = list_sql([[
  WHERE s.owner_id = $1 AND ($2::booking_status IS NULL OR b.status = $2::booking_status)]], 2)

local LIST_ALL = list_sql([[
  WHERE ($1::booking_status IS NULL OR b.status = $1::booking_status)]], 1, "bookings b")

-- Validation -----------------------------------------------------------------------------

local READONLY = { readonly = true }

local CREATE_BODY = {
  space_id = { type = "integer", required = true, min = 1 },
  start_datetime = { type = "datetime", required = true },
  end_datetime = { type = "datetime", required = true },
  guests = { type = "integer", min = 1, max = 1000000, default = 1 },
  notes = { type = "string", nullable = true, max_length = 2000 },
  id = READONLY,
  client_id = READONLY,
  status = READONLY,
  total_price = READONLY,
  currency = READONLY,
  price_breakdown = READONLY,
  duration_hours = READONLY,
  decline_reason = READONLY,
  created_at = READONLY,
  updated_at = READONLY,
}

local DECLINE_BODY = {
  reason = { type = "string", nullable = true, max_length = 500 },
}

local LIST_FILTERS = {
  status = { type = "string", lower = true, enum = flow.STATUSES,
    description = "only the bookings in this status" },
}

-- Shapes ---------------------------------------------------------------------------------

-- A booking as the API shows it (row: flow.BOOKING_COLUMNS and flow.SPACE_EMBED).
function _M.booking(row)
  local zone = row.space_timezone
  local currency = row.currency
  return {
    id = row.id,
    client_id = row.client_id,
    space_id = row.space_id,
    start_datetime = time.format(row.start_s, zone),
    end_datetime = time.format(row.end_s, zone),
    duration_hours = (row.end_s - row.start_s) / 3600,
    guests = row.guests,
    notes = row.notes,
    total_price = money.to_major(row.total_minor, currency),
    currency = currency,
    price_breakdown = flow.breakdown_major(row.price_breakdown, currency),
    status = row.status,
    decline_reason = row.decline_reason,
    created_at = row.created_at,
    updated_at = row.updated_at,
    space = {
      id = row.space_id,
      title = row.space_title,
      location = row.space_location,
      main_image_url = row.space_main_image_url,
    },
  }
end

-- Helpers --------------------------------------------------------------------------------

local is_admin = auth.is_admin

local function is_host(user, row)
  return is_admin(user) or row.space_owner_id == user.id
end

-- The booking if the caller may see it (its client, the space's owner, an admin), else 404.
local function visible_booking(req)
  local row = db.one(flow.BOOKING_BY_ID, req.params.id)
  local user = req.user
  if not row or not (row.client_id == user.id or is_host(user, row)) then
    api.not_found("booking")
  end
  return row
end

-- The booking if the caller may answer it (the space's owner, an admin), else 404.
local function hosted_booking(req)
  local row = db.one(flow.BOOKING_BY_ID, req.params.id)
  if not row or not is_host(req.user, row) then
    api.not_found("booking")
  end
  return row
end

local function parse_time(field, text, zone)
  local epoch, err = time.parse(text, zone)
  if not epoch then
    api.fail({ [field] = err })
  end
  return epoch
end

-- Handlers -------------------------------------------------------------------------------

function _M.create(req)
  local body = req.body
  local space = db.one(flow.SPACE_FOR_BOOKING, body.space_id)
  if not space or space.deleted then
    api.fail({ space_id = "no such space" })
  end
  local zone = space.timezone
  local start_s = parse_time("start_datetime", body.start_datetime, zone)
  local end_s = parse_time("end_datetime", body.end_datetime, zone)
  local notes = body.notes
  if notes == "" then
    notes = nil
  end
  local row = flow.create(req.user.id, space, start_s, end_s, body.guests, notes)
  local message = "Booking request created successfully"
  if row.status == "confirmed" then
    message = "Booking confirmed"
  end
  return 201, { message = message, booking = _M.booking(row) }
end

function _M.list(req)
  local f, pager = api.list_params(req, LIST_FILTERS)
  local user = req.user
  if is_admin(user) then
    return spaces.page_json(req, pager, LIST_ALL, { f.status }, 1, SHAPERS)
  end
  if user.role == "owner" then
    return spaces.page_json(req, pager, LIST_OF_OWNER, { user.id, f.status }, 2, SHAPERS)
  end
  return spaces.page_json(req, pager, LIST_OF_CLIENT, { user.id, f.status }, 2, SHAPERS)
end

function _M.show(req)
  return 200, _M.booking(visible_booking(req))
end

function _M.approve(req)
  local row = flow.approve(hosted_booking(req))
  return 200, { message = "Booking approved", booking = _M.booking(row) }
end

function _M.decline(req)
  local reason = req.body.reason
  if reason == "" or reason == json.null then
    reason = nil
  end
  local row = flow.decline(hosted_booking(req), reason)
  return 200, { message = "Booking declined", booking = _M.booking(row) }
end

function _M.cancel(req)
  local booking = visible_booking(req)
  local by_host = booking.client_id ~= req.user.id
  local row, percent = flow.cancel(booking, by_host)
  local currency = row.currency
  -- A paid booking gets the policy's refund through its payment's provider.
  local paid = payment_flow.refund_booking(row)
  local refund = {
    percent = percent,
    amount = money.to_major(row.refund_minor, currency),
    currency = currency,
  }
  if paid then
    -- refunded (by the provider), manual (to pay back by hand), failed (see the log), none
    refund.payment_id = paid.payment_id
    refund.status = paid.status
  end
  return 200, { message = "Booking cancelled", booking = _M.booking(row), refund = refund }
end

-- Routes ---------------------------------------------------------------------------------

local compat = api.compat_path

local TAGS = { "bookings" }
local HOSTS = { "owner", "admin" }

-- The shapes of the answers, for the OpenAPI document (bookings.booking).
local BREAKDOWN = openapi.object({
  currency = openapi.CURRENCY,
  hours = openapi.NUMBER,
  lines = openapi.array(openapi.ref("PriceLine")),
  subtotal = openapi.AMOUNT,
  tax = openapi.AMOUNT,
  tax_rate_percent = openapi.NUMBER,
  total = openapi.AMOUNT,
})
BREAKDOWN.nullable = true
BREAKDOWN.description = "the pricing script's quote, kept when the booking was made"
local BOOKING = openapi.component("Booking", openapi.object({
  id = openapi.ID,
  client_id = openapi.ID,
  space_id = openapi.ID,
  start_datetime = openapi.DATETIME,
  end_datetime = openapi.DATETIME,
  duration_hours = openapi.NUMBER,
  guests = openapi.INTEGER,
  notes = openapi.TEXT_OR_NULL,
  total_price = openapi.AMOUNT,
  currency = openapi.CURRENCY,
  price_breakdown = BREAKDOWN,
  status = { type = "string", enum = json.array({ table.unpack(flow.STATUSES) }) },
  decline_reason = openapi.TEXT_OR_NULL,
  created_at = openapi.DATETIME,
  updated_at = openapi.DATETIME,
  space = openapi.object({
    id = openapi.ID,
    title = openapi.STRING,
    location = openapi.STRING,
    main_image_url = openapi.TEXT_OR_NULL,
  }, { "id", "title" }),
}, { "id", "client_id", "space_id", "start_datetime", "end_datetime", "total_price",
  "currency", "status", "space" }))
local MESSAGE_BOOKING = openapi.object({ message = openapi.MESSAGE, booking = BOOKING },
  { "message", "booking" })
local CANCELLED = openapi.object({
  message = openapi.MESSAGE,
  booking = BOOKING,
  refund = openapi.object({
    percent = openapi.NUMBER,
    amount = openapi.AMOUNT,
    currency = openapi.CURRENCY,
    payment_id = { type = "integer", description = "a paid booking: the payment refunded" },
    status = {
      type = "string",
      enum = spacer.json.array({ "refunded", "manual", "failed", "none" }),
      description = "a paid booking: refunded by the provider, manual (to pay back by hand), "
        .. "failed (see the log), none",
    },
  }, { "percent", "amount", "currency" }),
}, { "message", "booking", "refund" })
local NOT_PENDING = "the booking is not in a state for this (invalid_status), or has "
  .. "already started"

spacer.post({ "/api/bookings/bookings", compat("/api/bookings") }, {
  roles = { "client" },
  body = CREATE_BODY,
  summary = "Request a booking (client); an instant-book space confirms it at once",
  description = "The price is computed by the pricing script now and kept. 422 when the "
    .. "space does not exist, the times are not valid for it (notice, duration), or the "
    .. "guests exceed its capacity.",
  status = 201,
  result = MESSAGE_BOOKING,
  responses = { [409] = "the space is not taking bookings (space_unavailable), an instant "
    .. "booking's slot is taken (slot_taken), or the space changed meanwhile" },
  tags = TAGS,
}, _M.create)

local LIST = {
  auth = true,
  summary = "A client's bookings, an owner's spaces' bookings, every booking for an admin; "
    .. "filter status; page, per_page",
  query = LIST_FILTERS,
  paged = true,
  result = BOOKING,
  tags = TAGS,
}
spacer.get({ "/api/bookings/bookings", compat("/api/bookings") }, LIST, _M.list)

spacer.get(compat("/api/owner/bookings"), {
  roles = HOSTS,
  summary = "The bookings of the caller's spaces (every booking for an admin)",
  query = LIST_FILTERS,
  paged = true,
  result = BOOKING,
  tags = TAGS,
}, _M.list)

spacer.get(compat("/api/admin/bookings"), {
  roles = { "admin" },
  summary = "Every booking (admin)",
  query = LIST_FILTERS,
  paged = true,
  result = BOOKING,
  tags = TAGS,
}, _M.list)

spacer.get("/api/bookings/bookings/{id}", {
  auth = true,
  summary = "One booking (its client, the space's owner, admin)",
  result = BOOKING,
  responses = { [404] = "no such booking, or not yours to see" },
  tags = TAGS,
}, _M.show)

spacer.patch({ "/api/bookings/bookings/{id}/approve", compat("/api/owner/bookings/{id}/approve") }, {
  roles = HOSTS,
  summary = "Confirm a pending booking; overlapping pending requests are declined",
  result = MESSAGE_BOOKING,
  responses = { [404] = "no such booking among the caller's spaces",
    [409] = "not pending, its start has passed, it overlaps a confirmed booking (slot_taken), "
      .. "or the space was removed" },
  tags = TAGS,
}, _M.approve)

spacer.patch({ "/api/bookings/bookings/{id}/decline", compat("/api/owner/bookings/{id}/decline") }, {
  roles = HOSTS,
  body = DECLINE_BODY,
  summary = "Decline a pending booking; optional reason",
  result = MESSAGE_BOOKING,
  responses = { [404] = "no such booking among the caller's spaces", [409] = NOT_PENDING },
  tags = TAGS,
}, _M.decline)

spacer.patch("/api/bookings/bookings/{id}/cancel", {
  auth = true,
  summary = "Cancel a pending or upcoming confirmed booking; the policy decides the refund",
  result = CANCELLED,
  responses = { [404] = "no such booking, or not yours to see", [409] = NOT_PENDING },
  tags = TAGS,
}, _M.cancel)

return _M

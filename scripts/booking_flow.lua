-- booking_flow.lua: the life of a booking. What a request must satisfy, what it costs, what
-- approving, declining and cancelling do, and what a cancellation refunds. Integrators edit
-- the rules here (and the numbers in spacer.conf's [bookings] and [pricing]); `spacer reload`
-- picks them up. The routes (routes/bookings.lua) only speak HTTP.
--
-- States:  pending -> confirmed | declined | cancelled;  confirmed -> cancelled.
--
-- Creating (flow.create): the rules of flow.check_request (end after start, start in the
-- future and at least min_notice_minutes away, min/max duration, the space bookable —
-- available and not removed —, guests within capacity), then one INSERT that re-checks the
-- space under a row lock (so a space removed meanwhile takes no booking). The price comes
-- from scripts/pricing.lua and is stored with the booking (subtotal, tax, total and the
-- breakdown): a later pricing change never alters it. A space with instant_book creates its
-- bookings confirmed: the exclusion constraint bookings_slot_excl applies at once, and
-- pending requests overlapping the new booking are declined in the same statement.
--
-- Approving (flow.approve): in one transaction, the space's row is locked (FOR NO KEY
-- UPDATE: approvals of one space take turns, while new pending requests — which only take
-- KEY SHARE — go on), the booking becomes confirmed if it is still pending and has not
-- started, and the pending requests that overlap it are declined with
-- [bookings] decline_reason_on_overlap. The database has the final word: a confirmed booking
-- overlapping another is refused by bookings_slot_excl (SQLSTATE 23P01), which becomes a
-- 409 slot_taken naming the booking it collides with (extra.conflicting_booking_id).
--
-- Cancelling (flow.cancel): a pending booking, or a confirmed one before it starts. The
-- refund (flow.refund_percent) is stored as refund_minor; the payments code pays it out.
--
-- The price breakdown stored in bookings.price_breakdown (minor units, as pricing.quote
-- answers): { currency, hours, lines = [{ code, description, quantity, unit_amount,
-- amount }], subtotal, tax, total, tax_rate_percent }. flow.breakdown_major shows it in
-- major units.
local money = require("lib.money")
local pricing = require("pricing")

local _M = {}

local db = spacer.db
local json = spacer.json

-- Settings (the only place that declares [pricing] and [bookings]) ----------------------

local PRICING = spacer.config.declare("pricing", {
  vat_percent = 16,
  weekend_surcharge_percent = 0,
  peak_percent = 0,
  peak_from_hour = 17,
  peak_to_hour = 21,
  peak_days = {},
})

local SETTINGS = spacer.config.declare("bookings", {
  default_timezone = "Africa/Nairobi",
  min_notice_minutes = 60,
  min_duration_minutes = 60,
  max_duration_hours = 720,
  decline_reason_on_overlap = "slot no longer available",
  decline_reason_on_space_removed = "space removed",
  full_refund_notice_hours = 48,
  partial_refund_notice_hours = 24,
  partial_refund_percent = 50,
  host_cancel_refund_percent = 100,
})

_M.PRICING = PRICING
_M.SETTINGS = SETTINGS

local function setting_error(section, key, message)
  error(string.format("spacer.conf [%s] %s %s", section, key, message), 0)
end

local function check_settings()
  if not spacer.time.valid_zone(SETTINGS.default_timezone) then
    setting_error("bookings", "default_timezone", "is not a known time zone")
  end
  for _, key in ipairs({ "min_notice_minutes", "min_duration_minutes", "max_duration_hours",
    "full_refund_notice_hours", "partial_refund_notice_hours" }) do
    if SETTINGS[key] < 0 then
      setting_error("bookings", key, "must be at least 0")
    end
  end
  for _, key in ipairs({ "partial_refund_percent", "host_cancel_refund_percent" }) do
    if SETTINGS[key] < 0 or SETTINGS[key] > 100 then
      setting_error("bookings", key, "must be between 0 and 100")
    end
  end
  if SETTINGS.max_duration_hours * 60 < SETTINGS.min_duration_minutes then
    setting_error("bookings", "max_duration_hours", "is shorter than min_duration_minutes")
  end
  if PRICING.peak_from_hour < 0 or PRICING.peak_to_hour > 24
      or PRICING.peak_from_hour >= PRICING.peak_to_hour then
    setting_error("pricing", "peak_from_hour", "and peak_to_hour must be 0 <= from < to <= 24")
  end
end
check_settings()

-- What pricing.quote gets as opts.
local function pricing_opts()
  local opts = {
    vat_percent = PRICING.vat_percent,
    weekend_surcharge_percent = PRICING.weekend_surcharge_percent,
  }
  if PRICING.peak_percent > 0 then
    local days
    if #PRICING.peak_days > 0 then
      days = {}
      for i, d in ipairs(PRICING.peak_days) do
        local n = math.tointeger(tonumber(d))
        if not n or n < 1 or n > 7 then
          setting_error("pricing", "peak_days", "must list week days 1 (Monday) to 7 (Sunday)")
        end
        days[i] = n
      end
    end
    opts.peak = {
      percent = PRICING.peak_percent,
      from_hour = PRICING.peak_from_hour,
      to_hour = PRICING.peak_to_hour,
      days = days,
    }
  end
  local _, err = pricing.quote({ price_per_hour = 100, price_per_day = 0 }, 0, 3600, opts)
  if err then
    setting_error("pricing", "", err)
  end
  return opts
end

local PRICE_OPTS = pricing_opts()

-- The state machine -------------------------------------------------------------------

-- TRANSITIONS[status][action] -> the status the action leads to
_M.TRANSITIONS = {
  pending = { approve = "confirmed", decline = "declined", cancel = "cancelled" },
  confirmed = { cancel = "cancelled" },
  declined = {},
  cancelled = {},
}

_M.STATUSES = { "pending", "confirmed", "declined", "cancelled" }

-- flow.next_status("pending", "approve") -> "confirmed" | nil, reason
function _M.next_status(status, action)
  local from = _M.TRANSITIONS[status]
  if not from then
    return nil, "unknown status " .. tostring(status)
  end
  local to = from[action]
  if not to then
    return nil, string.format("a %s booking cannot be %s", status, ({
      approve = "approved", decline = "declined", cancel = "cancelled",
    })[action] or tostring(action))
  end
  return to
end

-- The cancellation policy ----------------------------------------------------------------

-- flow.refund_percent(status, notice_s, by_host) -> percent of the total refunded
--   status    the booking's status before it is cancelled
--   notice_s  seconds from the cancellation to the booking's start
--   by_host   cancelled by the space's owner or an admin rather than the client
-- A pending request was never accepted: everything paid comes back. A host who cancels a
-- confirmed booking refunds host_cancel_refund_percent. A client gets 100% with at least
-- full_refund_notice_hours of notice, partial_refund_percent with at least
-- partial_refund_notice_hours, else nothing.
function _M.refund_percent(status, notice_s, by_host)
  if status == "pending" then
    return 100
  end
  if by_host then
    return SETTINGS.host_cancel_refund_percent
  end
  if notice_s >= SETTINGS.full_refund_notice_hours * 3600 then
    return 100
  end
  if notice_s >= SETTINGS.partial_refund_notice_hours * 3600 then
    return SETTINGS.partial_refund_percent
  end
  return 0
end

-- flow.refund_amount(total_minor, percent) -> minor units, rounded half up. percent may have
-- two decimals (37.5).
function _M.refund_amount(total_minor, percent)
  local bp = math.floor(percent * 100 + 0.5)
  return (total_minor * bp * 2 + 10000) // 20000
end

-- Prices ---------------------------------------------------------------------------------

-- A space row (price_*_minor columns) as pricing.quote reads it.
local function priced(space)
  return {
    price_per_hour = space.price_per_hour_minor,
    price_per_day = space.price_per_day_minor,
    currency = space.currency,
    timezone = space.timezone,
  }
end

-- flow.quote(space_row, start_s, end_s) -> quote (minor units) | nil, err
function _M.quote(space, start_s, end_s)
  return pricing.quote(priced(space), start_s, end_s, PRICE_OPTS)
end

-- What is stored in bookings.price_breakdown: the quote, minor units.
function _M.breakdown(quote)
  local lines = {}
  for i, line in ipairs(quote.lines) do
    lines[i] = {
      code = line.code,
      description = line.description,
      quantity = line.quantity,
      unit_amount = line.unit_amount,
      amount = line.amount,
    }
  end
  return {
    currency = quote.currency,
    hours = quote.hours,
    lines = json.array(lines),
    subtotal = quote.subtotal,
    tax = quote.tax,
    tax_rate_percent = quote.tax_rate_percent,
    total = quote.total,
  }
end

local math_type = math.type

-- An integer amount in minor units -> major units (money.to_major: minor / 10^exponent);
-- anything else as it is. factor: 10^exponent of the currency, found once per breakdown
-- (every booking of a list goes through here).
local function major(v, factor)
  if math_type(v) == "integer" then
    return v / factor
  end
  return v
end

-- The keys of a breakdown whose integers are amounts in minor units (breakdown_major; the
-- lists of routes/bookings.lua scale them with spacer.json.scaler).
_M.BREAKDOWN_AMOUNTS = { "amount", "unit_amount", "subtotal", "tax", "total" }

-- A quote or stored breakdown in major units: { currency, lines, subtotal, tax, total,
-- hours, tax_rate_percent }.
function _M.breakdown_major(b, currency)
  if type(b) ~= "table" or b == json.null then
    return json.null
  end
  currency = b.currency or currency
  local factor = 10 ^ money.exponent(currency) -- as money.to_major divides: exactly 100.0
  local lines = {}
  for i, line in ipairs(b.lines or {}) do
    lines[i] = {
      code = line.code,
      description = line.description,
      quantity = line.quantity,
      unit_amount = major(line.unit_amount, factor),
      amount = major(line.amount, factor),
    }
  end
  return {
    currency = currency,
    hours = b.hours,
    lines = json.array(lines),
    subtotal = major(b.subtotal, factor),
    tax = major(b.tax, factor),
    tax_rate_percent = b.tax_rate_percent,
    total = major(b.total, factor),
  }
end

-- Requests ------------------------------------------------------------------------------

local function plural(n, word)
  if n == 1 then
    return "1 " .. word
  end
  return n .. " " .. word .. "s"
end

-- flow.check_request(space, start_s, end_s, guests, now) -> nil | problem
-- space: a spaces row (capacity, is_available, deleted); times in epoch seconds.
-- problem: { status = 422, code =, message =, fields = {...} } or a 409 space_unavailable.
function _M.check_request(space, start_s, end_s, guests, now)
  local fields = {}
  if space == nil or space.deleted then
    fields.space_id = "no such space"
  end
  if end_s <= start_s then
    fields.end_datetime = "must be after start_datetime"
  else
    local minutes = (end_s - start_s) / 60
    if minutes < SETTINGS.min_duration_minutes then
      fields.end_datetime = "the booking must last at least "
        .. plural(SETTINGS.min_duration_minutes, "minute")
    elseif minutes > SETTINGS.max_duration_hours * 60 then
      fields.end_datetime = "the booking may last at most "
        .. plural(SETTINGS.max_duration_hours, "hour")
    end
  end
  if start_s <= now then
    fields.start_datetime = "must be in the future"
  elseif start_s < now + SETTINGS.min_notice_minutes * 60 then
    fields.start_datetime = "must be at least " .. plural(SETTINGS.min_notice_minutes, "minute")
      .. " from now"
  end
  if space and not space.deleted and guests > space.capacity then
    fields.guests = "must be at most " .. space.capacity .. " (the space's capacity)"
  end
  if next(fields) then
    return { status = 422, code = "validation_failed", message = "validation failed",
      fields = fields }
  end
  if not space.is_available then
    return { status = 409, code = "space_unavailable",
      message = "this space is not taking bookings" }
  end
  return nil
end

-- flow.raise(problem): a problem of check_request as the HTTP error.
function _M.raise(problem)
  spacer.error(problem.status, problem.message, { code = problem.code, fields = problem.fields })
end

-- SQL ------------------------------------------------------------------------------------

-- A booking as the routes show it: with epochs for its times and its space's embed.
_M.BOOKING_COLUMNS = [[
  b.id, b.client_id, b.space_id,
  extract(epoch FROM b.start_at)::bigint AS start_s,
  extract(epoch FROM b.end_at)::bigint AS end_s,
  b.guests, b.notes, b.total_minor, b.currency, b.price_breakdown, b.status::text AS status,
  b.decline_reason, b.refund_minor, b.created_at, b.updated_at]]

-- The space's part of a booking row (from spaces s).
_M.SPACE_EMBED = [[
  s.owner_id AS space_owner_id, s.title AS space_title, s.location AS space_location,
  s.main_image_url AS space_main_image_url, s.timezone AS space_timezone]]

local BOOKING_COLUMNS, SPACE_EMBED = _M.BOOKING_COLUMNS, _M.SPACE_EMBED

-- One booking with its space (visibility is decided from client_id and space_owner_id).
_M.BOOKING_BY_ID = "SELECT " .. BOOKING_COLUMNS .. ", " .. SPACE_EMBED .. [[
  FROM bookings b JOIN spaces s ON s.id = b.space_id
  WHERE b.id = $1]]

-- What a booking needs of its space: availability and price (not yet locked).
_M.SPACE_FOR_BOOKING = [[
  SELECT id, owner_id, capacity, price_per_hour_minor, price_per_day_minor, currency,
         timezone, is_available, instant_book, deleted_at IS NOT NULL AS deleted
  FROM spaces WHERE id = $1]]

-- $1 space, $2 client, $3 start, $4 end (epochs), $5 guests, $6 notes, $7 currency,
-- $8 subtotal, $9 tax, $10 total, $11 breakdown. The space is re-checked under KEY SHARE:
-- a concurrent removal (FOR UPDATE) is waited for and seen. No row: the space changed.
local INSERT_PENDING = [[
  WITH s AS (
    SELECT id, owner_id, title, location, main_image_url, timezone FROM spaces
    WHERE id = $1 AND deleted_at IS NULL AND is_available AND NOT instant_book
    FOR KEY SHARE
  ), b AS (
    INSERT INTO bookings AS b (space_id, client_id, start_at, end_at, guests, notes, status,
                               currency, subtotal_minor, tax_minor, total_minor, price_breakdown)
    SELECT s.id, $2, to_timestamp($3), to_timestamp($4), $5, $6, 'pending',
           $7, $8, $9, $10, $11::jsonb
    FROM s
    RETURNING ]] .. BOOKING_COLUMNS .. [[
  )
  SELECT b.*, ]] .. SPACE_EMBED .. [[ FROM b, s]]

-- The same for an instant-book space: confirmed at once (bookings_slot_excl applies), the
-- space locked like an approval, overlapping pending requests declined ($12 the reason).
local INSERT_CONFIRMED = [[
  WITH s AS (
    SELECT id, owner_id, title, location, main_image_url, timezone FROM spaces
    WHERE id = $1 AND deleted_at IS NULL AND is_available AND instant_book
    FOR NO KEY UPDATE
  ), b AS (
    INSERT INTO bookings AS b (space_id, client_id, start_at, end_at, guests, notes, status,
                               currency, subtotal_minor, tax_minor, total_minor, price_breakdown)
    SELECT s.id, $2, to_timestamp($3), to_timestamp($4), $5, $6, 'confirmed',
           $7, $8, $9, $10, $11::jsonb
    FROM s
    RETURNING ]] .. BOOKING_COLUMNS .. [[
  ), declined AS (
    UPDATE bookings p SET status = 'declined', decline_reason = $12
    FROM b
    WHERE p.space_id = b.space_id AND p.status = 'pending'
      AND tstzrange(p.start_at, p.end_at) && tstzrange(to_timestamp($3), to_timestamp($4))
    RETURNING p.id
  )
  SELECT b.*, ]] .. SPACE_EMBED .. [[, (SELECT count(*) FROM declined) AS declined_count
  FROM b, s]]

-- A confirmed booking overlapping [$2, $3) of space $1, other than $4.
local CONFLICTING = [[
  SELECT id FROM bookings
  WHERE space_id = $1 AND status = 'confirmed' AND id <> $4
    AND tstzrange(start_at, end_at) && tstzrange(to_timestamp($2), to_timestamp($3))
  ORDER BY start_at LIMIT 1]]

-- Approvals of one space take turns on this lock; new pending requests (KEY SHARE) do not.
local LOCK_SPACE = [[
  SELECT deleted_at IS NULL AS live FROM spaces WHERE id = $1 FOR NO KEY UPDATE]]

-- $1 booking, $2 the decline reason of the overlapping pending requests.
local APPROVE = [[
  WITH b AS (
    UPDATE bookings b SET status = 'confirmed'
    WHERE b.id = $1 AND b.status = 'pending' AND b.start_at > now()
    RETURNING ]] .. BOOKING_COLUMNS .. [[, b.start_at AS start_at, b.end_at AS end_at
  ), declined AS (
    UPDATE bookings p SET status = 'declined', decline_reason = $2
    FROM b
    WHERE p.space_id = b.space_id AND p.status = 'pending' AND p.id <> b.id
      AND tstzrange(p.start_at, p.end_at) && tstzrange(b.start_at, b.end_at)
    RETURNING p.id
  )
  SELECT b.*, ]] .. SPACE_EMBED .. [[, (SELECT count(*) FROM declined) AS declined_count
  FROM b JOIN spaces s ON s.id = b.space_id]]

local DECLINE = [[
  WITH b AS (
    UPDATE bookings b SET status = 'declined', decline_reason = $2
    WHERE b.id = $1 AND b.status = 'pending'
    RETURNING ]] .. BOOKING_COLUMNS .. [[
  )
  SELECT b.*, ]] .. SPACE_EMBED .. [[ FROM b JOIN spaces s ON s.id = b.space_id]]

-- $1 booking, $2 the status it was seen in, $3 refund. A confirmed one only before it starts.
local CANCEL = [[
  WITH b AS (
    UPDATE bookings b SET status = 'cancelled', cancelled_at = now(), refund_minor = $3
    WHERE b.id = $1 AND b.status = $2::booking_status
      AND (b.status = 'pending' OR b.start_at > now())
    RETURNING ]] .. BOOKING_COLUMNS .. [[
  )
  SELECT b.*, ]] .. SPACE_EMBED .. [[ FROM b JOIN spaces s ON s.id = b.space_id]]

-- A removed space takes no more requests: its pending ones are declined ($2 the reason).
_M.DECLINE_PENDING_OF_SPACE = [[
  UPDATE bookings SET status = 'declined', decline_reason = $2
  WHERE space_id = $1 AND status = 'pending']]

-- Database errors ------------------------------------------------------------------------

local function is_slot_conflict(e)
  return db.is_error(e) and e.sqlstate == "23P01"
    and (e.constraint == nil or e.constraint == "bookings_slot_excl")
end

-- Raises the 409 of a slot already confirmed, naming the booking it collides with (found
-- after the failure: the constraint has said no, this only explains it).
local function slot_taken(space_id, start_s, end_s, own_id)
  local row = db.one(CONFLICTING, space_id, start_s, end_s, own_id or 0)
  local other = row and row.id or json.null
  local message = "this slot overlaps a confirmed booking"
  if row then
    message = "this slot overlaps confirmed booking " .. row.id
  end
  spacer.error(409, message, {
    code = "slot_taken",
    extra = { conflicting_booking_id = other },
  })
end

local function not_in_state(booking, action)
  local _, reason = _M.next_status(booking.status, action)
  spacer.error(409, reason or "the booking is not in a state for this", {
    code = "invalid_status",
    extra = { status = booking.status },
  })
end

local function started(what)
  spacer.error(409, "the booking has already started; it can no longer be " .. what,
    "booking_started")
end

-- Creating -------------------------------------------------------------------------------

-- flow.create(client_id, space, start_s, end_s, guests, notes[, now]) -> booking row
-- (BOOKING_COLUMNS and SPACE_EMBED, plus declined_count for an instant booking). Raises the
-- HTTP error of a broken rule, a space that changed meanwhile, or a slot already taken.
function _M.create(client_id, space, start_s, end_s, guests, notes, now)
  now = now or spacer.time.now()
  for _ = 1, 2 do
    local problem = _M.check_request(space, start_s, end_s, guests, now)
    if problem then
      _M.raise(problem)
    end
    local quote = assert(_M.quote(space, start_s, end_s))
    local ok, row
    if space.instant_book then
      ok, row = pcall(db.one, INSERT_CONFIRMED, space.id, client_id, start_s, end_s, guests,
        notes, quote.currency, quote.subtotal, quote.tax, quote.total, _M.breakdown(quote),
        SETTINGS.decline_reason_on_overlap)
    else
      ok, row = pcall(db.one, INSERT_PENDING, space.id, client_id, start_s, end_s, guests,
        notes, quote.currency, quote.subtotal, quote.tax, quote.total, _M.breakdown(quote))
    end
    if not ok then
      if is_slot_conflict(row) then
        slot_taken(space.id, start_s, end_s)
      end
      error(row, 0)
    end
    if row then
      spacer.cache.touch("bookings") -- this instance's cached availability, at once
      return row
    end
    -- The space was removed, closed or switched instant_book since it was read: again.
    space = db.one(_M.SPACE_FOR_BOOKING, space.id)
  end
  spacer.error(409, "this space changed while the booking was made; try again",
    "space_changed")
end

-- Approving, declining, cancelling -------------------------------------------------------

-- flow.approve(booking[, now]) -> the confirmed booking row (with declined_count).
-- booking: a row of BOOKING_BY_ID (id, space_id, status, start_s, end_s).
function _M.approve(booking, now)
  now = now or spacer.time.now()
  if not _M.next_status(booking.status, "approve") then
    not_in_state(booking, "approve")
  end
  if booking.start_s <= now then
    started("approved")
  end
  local ok, row = pcall(db.tx, function()
    local space = db.one(LOCK_SPACE, booking.space_id)
    if not space or not space.live then
      spacer.error(409, "the space has been removed", "space_removed")
    end
    local approved = db.one(APPROVE, booking.id, SETTINGS.decline_reason_on_overlap)
    if approved then
      return approved
    end
    -- Not pending any more, or started: say which.
    local current = db.one(_M.BOOKING_BY_ID, booking.id)
    if current.status ~= "pending" then
      not_in_state(current, "approve")
    end
    started("approved")
  end)
  if ok then
    spacer.cache.touch("bookings")
    return row
  end
  if is_slot_conflict(row) then
    slot_taken(booking.space_id, booking.start_s, booking.end_s, booking.id)
  end
  error(row, 0)
end

-- flow.decline(booking, reason) -> the declined booking row.
function _M.decline(booking, reason)
  if not _M.next_status(booking.status, "decline") then
    not_in_state(booking, "decline")
  end
  local row = db.one(DECLINE, booking.id, reason)
  if row then
    return row
  end
  not_in_state(db.one(_M.BOOKING_BY_ID, booking.id), "decline")
end

-- flow.cancel(booking, by_host[, now]) -> the cancelled booking row, the refund percent.
-- by_host: the space's owner or an admin cancels (not the client).
function _M.cancel(booking, by_host, now)
  now = now or spacer.time.now()
  for _ = 1, 2 do
    if not _M.next_status(booking.status, "cancel") then
      not_in_state(booking, "cancel")
    end
    if booking.status ~= "pending" and booking.start_s <= now then
      started("cancelled")
    end
    local percent = _M.refund_percent(booking.status, booking.start_s - now, by_host)
    local refund = _M.refund_amount(booking.total_minor, percent)
    local row = db.one(CANCEL, booking.id, booking.status, refund)
    if row then
      spacer.cache.touch("bookings")
      return row, percent
    end
    booking = db.one(_M.BOOKING_BY_ID, booking.id) -- changed meanwhile: look again
  end
  not_in_state(booking, "cancel")
end

return _M

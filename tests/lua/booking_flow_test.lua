-- booking_flow_test.lua: scripts/booking_flow.lua — the state machine, the cancellation
-- policy, the rules of a request (table-driven), and, against the test database, what
-- creating, approving and cancelling do (own users and spaces, uniquely named).
local flow = require("booking_flow")

local S = flow.SETTINGS
local HOUR = 3600
local NOW = 1800000000 -- a fixed "now" for the pure rules

-- The state machine ----------------------------------------------------------------------

local TRANSITIONS = {
  -- status,     action,    next status (nil: refused)
  { "pending", "approve", "confirmed" },
  { "pending", "decline", "declined" },
  { "pending", "cancel", "cancelled" },
  { "confirmed", "approve", nil },
  { "confirmed", "decline", nil },
  { "confirmed", "cancel", "cancelled" },
  { "declined", "approve", nil },
  { "declined", "decline", nil },
  { "declined", "cancel", nil },
  { "cancelled", "approve", nil },
  { "cancelled", "decline", nil },
  { "cancelled", "cancel", nil },
}

test("state machine: every status and action", function()
  for _, case in ipairs(TRANSITIONS) do
    local from, action, want = case[1], case[2], case[3]
    local got, err = flow.next_status(from, action)
    assert_eq(want, got, from .. " --" .. action)
    if want == nil then
      assert_true(type(err) == "string" and err:find(from, 1, true) ~= nil,
        "a reason naming the status: " .. tostring(err))
    end
  end
  assert_nil((flow.next_status("archived", "approve")))
  assert_nil((flow.next_status("pending", "archive")))
end)

test("state machine: the terminal states have no way out", function()
  for _, status in ipairs({ "declined", "cancelled" }) do
    assert_eq({}, flow.TRANSITIONS[status])
  end
  assert_eq({ "pending", "confirmed", "declined", "cancelled" }, flow.STATUSES)
end)

-- The cancellation policy ----------------------------------------------------------------

test("refund percent by notice, status and who cancels", function()
  local full, partial = S.full_refund_notice_hours * HOUR, S.partial_refund_notice_hours * HOUR
  local cases = {
    -- status,    notice (s),      by host, percent
    { "confirmed", full + 86400, false, 100 },
    { "confirmed", full, false, 100 },
    { "confirmed", full - 1, false, S.partial_refund_percent },
    { "confirmed", partial, false, S.partial_refund_percent },
    { "confirmed", partial - 1, false, 0 },
    { "confirmed", 60, false, 0 },
    { "confirmed", 60, true, S.host_cancel_refund_percent },
    { "confirmed", full + 1, true, S.host_cancel_refund_percent },
    { "pending", 60, false, 100 },
    { "pending", -3600, false, 100 },
    { "pending", 60, true, 100 },
  }
  for i, c in ipairs(cases) do
    assert_eq(c[4], flow.refund_percent(c[1], c[2], c[3]), "case " .. i)
  end
end)

test("shipped policy: 48h 100%, 24h 50%, else nothing", function()
  assert_eq(48, S.full_refund_notice_hours)
  assert_eq(24, S.partial_refund_notice_hours)
  assert_eq(50, S.partial_refund_percent)
  assert_eq(100, flow.refund_percent("confirmed", 48 * HOUR, false))
  assert_eq(50, flow.refund_percent("confirmed", 47 * HOUR, false))
  assert_eq(0, flow.refund_percent("confirmed", 23 * HOUR, false))
end)

test("refund amounts round half up to the minor unit", function()
  local cases = {
    -- total, percent, refund
    { 116000, 100, 116000 },
    { 116000, 50, 58000 },
    { 116000, 0, 0 },
    { 101, 50, 51 },      -- 50.5 -> 51
    { 3, 50, 2 },         -- 1.5 -> 2
    { 1, 50, 1 },         -- 0.5 -> 1
    { 1000, 37.5, 375 },
    { 999, 33.33, 333 },  -- 332.97 -> 333
    { 0, 100, 0 },
  }
  for _, c in ipairs(cases) do
    assert_eq(c[3], flow.refund_amount(c[1], c[2]), c[1] .. " at " .. c[2] .. "%")
  end
end)

-- The rules of a request -------------------------------------------------------------------

local function space(over)
  local s = { id = 1, capacity = 10, is_available = true, deleted = false, instant_book = false,
    price_per_hour_minor = 50000, price_per_day_minor = 0, currency = "KES",
    timezone = "Africa/Nairobi" }
  for k, v in pairs(over or {}) do
    s[k] = v
  end
  return s
end

test("check_request: each rule, table-driven", function()
  local start = NOW + 10 * 86400
  local cases = {
    -- name, space, start, end, guests, status, field
    { "fine", space(), start, start + 2 * HOUR, 1, nil },
    { "at capacity", space(), start, start + 2 * HOUR, 10, nil },
    { "end before start", space(), start, start - HOUR, 1, 422, "end_datetime" },
    { "end at start", space(), start, start, 1, 422, "end_datetime" },
    { "in the past", space(), NOW - HOUR, NOW + HOUR, 1, 422, "start_datetime" },
    { "now", space(), NOW, NOW + 2 * HOUR, 1, 422, "start_datetime" },
    { "short notice", space(), NOW + S.min_notice_minutes * 60 - 1,
      NOW + 3 * HOUR + S.min_notice_minutes * 60, 1, 422, "start_datetime" },
    { "just enough notice", space(), NOW + S.min_notice_minutes * 60,
      NOW + S.min_notice_minutes * 60 + 2 * HOUR, 1, nil },
    { "too short", space(), start, start + S.min_duration_minutes * 60 - 1, 1, 422,
      "end_datetime" },
    { "shortest", space(), start, start + S.min_duration_minutes * 60, 1, nil },
    { "longest", space(), start, start + S.max_duration_hours * HOUR, 1, nil },
    { "too long", space(), start, start + S.max_duration_hours * HOUR + 1, 1, 422,
      "end_datetime" },
    { "over capacity", space(), start, start + 2 * HOUR, 11, 422, "guests" },
    { "no space", nil, start, start + 2 * HOUR, 1, 422, "space_id" },
    { "removed space", space({ deleted = true }), start, start + 2 * HOUR, 1, 422, "space_id" },
    { "closed space", space({ is_available = false }), start, start + 2 * HOUR, 1, 409 },
  }
  for _, c in ipairs(cases) do
    local problem = flow.check_request(c[2], c[3], c[4], c[5], NOW)
    if c[6] == nil then
      assert_nil(problem, c[1])
    else
      assert_true(problem ~= nil, c[1] .. ": no problem found")
      assert_eq(c[6], problem.status, c[1])
      if c[7] then
        assert_true(problem.fields[c[7]] ~= nil, c[1] .. ": " .. spacer.json.encode(problem))
      else
        assert_eq("space_unavailable", problem.code, c[1])
      end
    end
  end
end)

test("check_request: several broken rules are named at once", function()
  local p = flow.check_request(space(), NOW - HOUR, NOW - 2 * HOUR, 50, NOW)
  assert_eq(422, p.status)
  assert_true(p.fields.start_datetime and p.fields.end_datetime and p.fields.guests and true)
end)

-- Prices ---------------------------------------------------------------------------------

test("quote with the configured VAT; breakdown in minor and major units", function()
  local start = spacer.time.parse("2027-03-02T10:00", "Africa/Nairobi")
  local q = assert(flow.quote(space(), start, start + 2 * HOUR))
  assert_eq(100000, q.subtotal)
  assert_eq(16000, q.tax)
  assert_eq(116000, q.total)
  local stored = flow.breakdown(q)
  assert_eq({ currency = "KES", hours = 2, subtotal = 100000, tax = 16000, total = 116000,
    tax_rate_percent = "16",
    lines = { { code = "hours", description = "2 hours × KES 500.00", quantity = 2,
      unit_amount = 50000, amount = 100000 } } }, stored)
  local shown = flow.breakdown_major(spacer.json.decode(spacer.json.encode(stored)))
  assert_eq(1000.0, shown.subtotal)
  assert_eq(160.0, shown.tax)
  assert_eq(1160.0, shown.total)
  assert_eq(500.0, shown.lines[1].unit_amount)
  assert_true(math.type(shown.total) == "float", "major amounts are decimals")
  assert_eq(spacer.json.null, flow.breakdown_major(spacer.json.null))
  local ugx = flow.breakdown_major({ currency = "UGX", subtotal = 50000, tax = 9000,
    total = 59000, lines = {} })
  assert_eq(59000.0, ugx.total)
end)

-- Against the database ------------------------------------------------------------------

local db = spacer.db

local function new_user(role)
  local email = role .. "-" .. spacer.crypto.random_hex(8) .. "@flow-test.example"
  return db.one([[INSERT INTO users (name, email, password_hash, role)
    VALUES ('Flow Test', $1, 'x', $2::user_role) RETURNING id]], email, role).id
end

local function new_space(owner_id, over)
  over = over or {}
  local row = db.one([[
    INSERT INTO spaces (owner_id, title, description, location, capacity,
                        price_per_hour_minor, price_per_day_minor, instant_book, timezone)
    VALUES ($1, $2, 'flow test', 'Flowtown', 10, 50000, 0, $3, $4)
    RETURNING id]], owner_id, "Flow " .. spacer.crypto.random_hex(6), over.instant_book or false,
    over.timezone or "Africa/Nairobi")
  return db.one(flow.SPACE_FOR_BOOKING, row.id)
end

local function at(text, zone)
  return assert(spacer.time.parse(text, zone or "Africa/Nairobi"))
end

local function load(id)
  return db.one(flow.BOOKING_BY_ID, id)
end

local function http_error(fn, status, code)
  local err = assert_error(fn)
  assert_true(spacer.is_error(err), "not an HTTP error: " .. tostring(err))
  assert_eq(status, err.status, err.message)
  if code then
    assert_eq(code, err.code, err.message)
  end
  return err
end

local function fixture()
  local owner, client = new_user("owner"), new_user("client")
  return owner, client, new_space(owner)
end

test("db: create stores the price; approve declines overlapping pending requests", function()
  local _, client, sp = fixture()
  local a = flow.create(client, sp, at("2027-05-04T10:00"), at("2027-05-04T12:00"), 2, "a")
  assert_eq("pending", a.status)
  assert_eq(116000, a.total_minor)
  assert_eq(116000, a.price_breakdown.total)
  assert_eq(at("2027-05-04T10:00"), a.start_s)
  local b = flow.create(client, sp, at("2027-05-04T11:00"), at("2027-05-04T13:00"), 1, nil)
  local c = flow.create(client, sp, at("2027-05-04T12:00"), at("2027-05-04T13:00"), 1, nil)
  local d = flow.create(client, sp, at("2027-05-04T08:00"), at("2027-05-04T10:30"), 1, nil)
  local approved = flow.approve(load(a.id))
  assert_eq("confirmed", approved.status)
  assert_eq(2, approved.declined_count)
  assert_eq("declined", load(b.id).status)
  assert_eq(S.decline_reason_on_overlap, load(b.id).decline_reason)
  assert_eq("declined", load(d.id).status)
  assert_eq("pending", load(c.id).status) -- adjacent: untouched
  http_error(function() flow.approve(load(b.id)) end, 409, "invalid_status")
  http_error(function() flow.approve(load(a.id)) end, 409, "invalid_status")
  http_error(function() flow.decline(load(a.id), "no") end, 409, "invalid_status")
end)

test("db: approving over a confirmed booking is 409 naming it", function()
  local _, client, sp = fixture()
  local a = flow.create(client, sp, at("2027-05-05T10:00"), at("2027-05-05T12:00"), 1, nil)
  flow.approve(load(a.id))
  local late = flow.create(client, sp, at("2027-05-05T11:30"), at("2027-05-05T12:30"), 1, nil)
  local err = http_error(function() flow.approve(load(late.id)) end, 409, "slot_taken")
  assert_eq(a.id, err.extra.conflicting_booking_id)
  assert_true(err.message:find(tostring(a.id), 1, true) ~= nil, err.message)
  assert_eq("pending", load(late.id).status)
end)

test("db: a request whose start has passed cannot be approved", function()
  local _, client, sp = fixture()
  local row = db.one([[
    INSERT INTO bookings (space_id, client_id, start_at, end_at, status, currency,
                          subtotal_minor, tax_minor, total_minor)
    VALUES ($1, $2, now() - interval '1 hour', now() + interval '1 hour', 'pending', 'KES',
            0, 0, 0) RETURNING id]], sp.id, client)
  http_error(function() flow.approve(load(row.id)) end, 409, "booking_started")
  -- even when the caller's clock says otherwise, the database's says no
  http_error(function() flow.approve(load(row.id), 0) end, 409, "booking_started")
  assert_eq("pending", load(row.id).status)
end)

test("db: instant book confirms, refuses overlaps, declines overlapping requests", function()
  local owner, client = new_user("owner"), new_user("client")
  local sp = new_space(owner)
  local p = flow.create(client, sp, at("2027-05-06T09:00"), at("2027-05-06T11:00"), 1, nil)
  db.exec("UPDATE spaces SET instant_book = true WHERE id = $1", sp.id)
  -- the stale row still says instant_book = false: create sees the change and goes on
  local a = flow.create(client, sp, at("2027-05-06T10:00"), at("2027-05-06T12:00"), 1, nil)
  assert_eq("confirmed", a.status)
  assert_eq(1, a.declined_count)
  assert_eq("declined", load(p.id).status)
  sp = db.one(flow.SPACE_FOR_BOOKING, sp.id)
  local err = http_error(function()
    flow.create(client, sp, at("2027-05-06T11:00"), at("2027-05-06T13:00"), 1, nil)
  end, 409, "slot_taken")
  assert_eq(a.id, err.extra.conflicting_booking_id)
  local b = flow.create(client, sp, at("2027-05-06T12:00"), at("2027-05-06T13:00"), 1, nil)
  assert_eq("confirmed", b.status)
end)

test("db: a space removed or closed meanwhile takes no booking", function()
  local _, client, sp = fixture()
  db.exec("UPDATE spaces SET deleted_at = now() WHERE id = $1", sp.id)
  local err = http_error(function()
    flow.create(client, sp, at("2027-05-07T10:00"), at("2027-05-07T12:00"), 1, nil)
  end, 422)
  assert_true(err.fields.space_id ~= nil)
  local _, client2, sp2 = fixture()
  db.exec("UPDATE spaces SET is_available = false WHERE id = $1", sp2.id)
  http_error(function()
    flow.create(client2, sp2, at("2027-05-07T10:00"), at("2027-05-07T12:00"), 1, nil)
  end, 409, "space_unavailable")
end)

test("db: cancel stores the policy's refund", function()
  local _, client, sp = fixture()
  local now = spacer.time.now()
  local cases = {
    -- hours ahead, confirm first, by host, percent
    { 30, true, false, 50 },
    { 100, true, false, 100 },
    { 5, true, false, 0 },
    { 5, true, true, 100 },
    { 5, false, false, 100 },
  }
  for i, c in ipairs(cases) do
    local start = now + c[1] * HOUR + i * 3 * HOUR
    local b = flow.create(client, sp, start, start + 2 * HOUR, 1, nil)
    if c[2] then
      flow.approve(load(b.id))
    end
    local row, percent = flow.cancel(load(b.id), c[3])
    assert_eq(c[4], percent, "case " .. i)
    assert_eq("cancelled", row.status)
    assert_eq(flow.refund_amount(116000, c[4]), row.refund_minor, "case " .. i)
    local stored = db.one("SELECT refund_minor, cancelled_at IS NOT NULL AS stamped "
      .. "FROM bookings WHERE id = $1", b.id)
    assert_eq(row.refund_minor, stored.refund_minor)
    assert_true(stored.stamped, "cancelled_at")
    http_error(function() flow.cancel(load(b.id), false) end, 409, "invalid_status")
  end
end)

test("db: naive times are the space's local time, across daylight saving", function()
  local owner, client = new_user("owner"), new_user("client")
  local london = new_space(owner, { timezone = "Europe/London" })
  local summer = flow.create(client, london, at("2027-07-14T10:00", "Europe/London"),
    at("2027-07-14T12:00", "Europe/London"), 1, nil)
  local winter = flow.create(client, london, at("2027-01-13T10:00", "Europe/London"),
    at("2027-01-13T12:00", "Europe/London"), 1, nil)
  assert_eq(at("2027-07-14T09:00:00Z"), summer.start_s)
  assert_eq(at("2027-01-13T10:00:00Z"), winter.start_s)
  assert_eq("2027-07-14T10:00:00+01:00", spacer.time.format(summer.start_s, "Europe/London"))
  assert_eq("2027-01-13T10:00:00+00:00", spacer.time.format(winter.start_s, "Europe/London"))
end)

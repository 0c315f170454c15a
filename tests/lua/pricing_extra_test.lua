-- pricing_extra_test.lua: scripts/pricing.lua across daylight-saving changes (the hours
-- billed are the hours that pass, not the hours the clock shows) and with the VAT the
-- booking flow passes from spacer.conf [pricing].
local pricing = require("pricing")
local flow = require("booking_flow")

local LONDON = "Europe/London"

local function at(text, zone)
  return assert(spacer.time.parse(text, zone))
end

local function london(per_hour, per_day)
  return { price_per_hour = per_hour, price_per_day = per_day or 0, currency = "GBP",
    timezone = LONDON }
end

local CASES = {
  -- name, from, to (local London time), hours billed
  { "spring forward: 00:00 to 03:00 is 2 hours", "2027-03-28T00:00", "2027-03-28T03:00", 2 },
  { "fall back: 00:00 to 03:00 is 4 hours", "2027-10-31T00:00", "2027-10-31T03:00", 4 },
  { "an ordinary night: 3 hours", "2027-06-13T00:00", "2027-06-13T03:00", 3 },
  { "a whole spring-forward day is 23 hours", "2027-03-28T00:00", "2027-03-29T00:00", 23 },
  { "a whole fall-back day is 25 hours", "2027-10-31T00:00", "2027-11-01T00:00", 25 },
}

test("daylight saving: hours billed are elapsed hours", function()
  for _, c in ipairs(CASES) do
    local q = assert(pricing.quote(london(1000), at(c[2], LONDON), at(c[3], LONDON),
      { vat_percent = 0 }))
    assert_eq(c[4], q.hours, c[1])
    assert_eq(c[4] * 1000, q.subtotal, c[1])
  end
end)

test("daylight saving: a 25-hour day at a day rate is a day and an hour", function()
  local q = assert(pricing.quote(london(1000, 10000), at("2027-10-31T00:00", LONDON),
    at("2027-11-01T00:00", LONDON), { vat_percent = 0 }))
  assert_eq(10000 + 1000, q.subtotal)
end)

test("weekend surcharge follows the local clock in London, summer and winter", function()
  -- Saturday 2027-07-10 00:00 BST is Friday 23:00 UTC: surcharged from the first hour.
  local opts = { vat_percent = 0, weekend_surcharge_percent = 50 }
  local q = assert(pricing.quote(london(1000), at("2027-07-10T00:00", LONDON),
    at("2027-07-10T02:00", LONDON), opts))
  assert_eq(3000, q.subtotal)
  -- Friday 2027-07-09 23:00 BST to Saturday 01:00: one weekday hour, one weekend hour.
  q = assert(pricing.quote(london(1000), at("2027-07-09T23:00", LONDON),
    at("2027-07-10T01:00", LONDON), opts))
  assert_eq(2500, q.subtotal)
end)

test("the booking flow quotes with [pricing] vat_percent", function()
  local space = { price_per_hour_minor = 50000, price_per_day_minor = 0, currency = "KES",
    timezone = "Africa/Nairobi" }
  local start = at("2027-03-02T10:00", "Africa/Nairobi")
  local q = assert(flow.quote(space, start, start + 2 * 3600))
  assert_eq(tostring(flow.PRICING.vat_percent), q.tax_rate_percent)
  assert_eq((100000 * flow.PRICING.vat_percent * 2 + 100) // 200, q.tax)
  assert_eq(q.subtotal + q.tax, q.total)
end)

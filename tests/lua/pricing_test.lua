-- pricing_test.lua: scripts/pricing.lua — the shipped price rule, in minor units.
local pricing = require("pricing")

local ZONE = "Africa/Nairobi"

-- local time in Nairobi (UTC+3) -> epoch seconds
local function at(text)
  local t, err = spacer.time.parse(text, ZONE)
  assert(t, err)
  return t
end

local function space(per_hour, per_day, currency)
  return { price_per_hour = per_hour, price_per_day = per_day, currency = currency or "KES",
    timezone = ZONE }
end

local KES_500_H = space(50000, 0)                -- KES 500 an hour, no day rate
local KES_500_H_7000_D = space(50000, 700000)    -- KES 500 an hour, KES 7,000 a day

local function hours_line(n, unit, description)
  return { code = "hours", description = description, quantity = n, unit_amount = unit,
    amount = n * unit }
end

local function days_line(n, unit, description)
  return { code = "days", description = description, quantity = n, unit_amount = unit,
    amount = n * unit }
end

-- 2026-12-01 is a Tuesday, 2026-12-04 a Friday, 2026-12-05 a Saturday.
local CASES = {
  {
    name = "2 weekday hours at KES 500/h (the API's example)",
    space = KES_500_H, from = "2026-12-01T10:00", to = "2026-12-01T12:00",
    hours = 2, subtotal = 100000, tax = 16000, total = 116000,
    lines = { hours_line(2, 50000, "2 hours × KES 500.00") },
  },
  {
    name = "a day rate above the hours charged changes nothing",
    space = KES_500_H_7000_D, from = "2026-12-01T10:00", to = "2026-12-01T12:00",
    hours = 2, subtotal = 100000, tax = 16000, total = 116000,
    lines = { hours_line(2, 50000, "2 hours × KES 500.00") },
  },
  {
    name = "a started hour is charged as a whole hour",
    space = KES_500_H, from = "2026-12-01T10:00", to = "2026-12-01T12:01",
    hours = 3, subtotal = 150000, tax = 24000, total = 174000,
    lines = { hours_line(3, 50000, "3 hours × KES 500.00") },
  },
  {
    name = "one second is one hour",
    space = KES_500_H, from = "2026-12-01T10:00:00", to = "2026-12-01T10:00:01",
    hours = 1, subtotal = 50000, tax = 8000, total = 58000,
    lines = { hours_line(1, 50000, "1 hour × KES 500.00") },
  },
  {
    name = "30 hours at 500/h with 7000/day: a day and 6 hours",
    space = KES_500_H_7000_D, from = "2026-12-01T10:00", to = "2026-12-02T16:00",
    hours = 30, subtotal = 1000000, tax = 160000, total = 1160000,
    lines = {
      days_line(1, 700000, "1 day × KES 7,000.00"),
      hours_line(6, 50000, "6 hours × KES 500.00"),
    },
  },
  {
    name = "exactly 48 hours are two days",
    space = KES_500_H_7000_D, from = "2026-12-01T10:00", to = "2026-12-03T10:00",
    hours = 48, subtotal = 1400000, tax = 224000, total = 1624000,
    lines = { days_line(2, 700000, "2 days × KES 7,000.00") },
  },
  {
    name = "15 hours cost more than a day: capped at the day price",
    space = KES_500_H_7000_D, from = "2026-12-01T08:00", to = "2026-12-01T23:00",
    hours = 15, subtotal = 700000, tax = 112000, total = 812000,
    lines = { days_line(1, 700000, "1 day × KES 7,000.00") },
  },
  {
    name = "14 hours cost exactly a day: charged by the hour",
    space = KES_500_H_7000_D, from = "2026-12-01T08:00", to = "2026-12-01T22:00",
    hours = 14, subtotal = 700000, tax = 112000, total = 812000,
    lines = { hours_line(14, 50000, "14 hours × KES 500.00") },
  },
  {
    name = "44 hours: a day, and 20 hours capped at a day",
    space = KES_500_H_7000_D, from = "2026-12-01T10:00", to = "2026-12-03T06:00",
    hours = 44, subtotal = 1400000, tax = 224000, total = 1624000,
    lines = { days_line(2, 700000, "2 days × KES 7,000.00") },
  },
  {
    name = "a day price above 24 hours: everything by the hour",
    space = space(50000, 2000000), from = "2026-12-01T10:00", to = "2026-12-02T16:00",
    hours = 30, subtotal = 1500000, tax = 240000, total = 1740000,
    lines = { hours_line(30, 50000, "30 hours × KES 500.00") },
  },
  {
    name = "no day rate: 30 hours by the hour",
    space = KES_500_H, from = "2026-12-01T10:00", to = "2026-12-02T16:00",
    hours = 30, subtotal = 1500000, tax = 240000, total = 1740000,
    lines = { hours_line(30, 50000, "30 hours × KES 500.00") },
  },
  {
    name = "weekend hours cost the same while the surcharge is off (the default)",
    space = KES_500_H_7000_D, from = "2026-12-05T10:00", to = "2026-12-05T12:00",
    hours = 2, subtotal = 100000, tax = 16000, total = 116000,
    lines = { hours_line(2, 50000, "2 hours × KES 500.00") },
  },
  {
    name = "a surcharge of 0 is off",
    space = KES_500_H, from = "2026-12-05T10:00", to = "2026-12-05T12:00",
    opts = { weekend_surcharge_percent = 0 },
    hours = 2, subtotal = 100000, tax = 16000, total = 116000,
    lines = { hours_line(2, 50000, "2 hours × KES 500.00") },
  },
  {
    name = "weekend surcharge on a Saturday in Nairobi",
    space = KES_500_H, from = "2026-12-05T10:00", to = "2026-12-05T12:00",
    opts = { weekend_surcharge_percent = 20 },
    hours = 2, subtotal = 120000, tax = 19200, total = 139200,
    lines = {
      hours_line(2, 50000, "2 hours × KES 500.00"),
      { code = "weekend_surcharge", description = "Weekend surcharge 20% on 2 hours",
        quantity = 1, unit_amount = 20000, amount = 20000 },
    },
  },
  {
    name = "weekend surcharge: not on a weekday",
    space = KES_500_H, from = "2026-12-01T10:00", to = "2026-12-01T12:00",
    opts = { weekend_surcharge_percent = 20 },
    hours = 2, subtotal = 100000, tax = 16000, total = 116000,
    lines = { hours_line(2, 50000, "2 hours × KES 500.00") },
  },
  {
    -- 22:00-01:00 in Nairobi is 19:00-22:00 UTC, all of it a Friday in UTC
    name = "weekend surcharge: the weekend starts at midnight in the space's zone",
    space = KES_500_H, from = "2026-12-04T22:00", to = "2026-12-05T01:00",
    opts = { weekend_surcharge_percent = 20 },
    hours = 3, subtotal = 160000, tax = 25600, total = 185600,
    lines = {
      hours_line(3, 50000, "3 hours × KES 500.00"),
      { code = "weekend_surcharge", description = "Weekend surcharge 20% on 1 hour",
        quantity = 1, unit_amount = 10000, amount = 10000 },
    },
  },
  {
    name = "weekend surcharge on a Saturday charged at the day rate: 20% of the day price",
    space = KES_500_H_7000_D, from = "2026-12-05T00:00", to = "2026-12-06T00:00",
    opts = { weekend_surcharge_percent = 20 },
    hours = 24, subtotal = 840000, tax = 134400, total = 974400,
    lines = {
      days_line(1, 700000, "1 day × KES 7,000.00"),
      { code = "weekend_surcharge", description = "Weekend surcharge 20% on 24 hours",
        quantity = 1, unit_amount = 140000, amount = 140000 },
    },
  },
  {
    -- a day Fri 12:00 - Sat 12:00 (half of it Saturday), then 6 hours of Saturday:
    -- 20% of (7,000 × 12/24 + 6 × 500) = 20% of 6,500 = 1,300
    name = "weekend surcharge with the day cap: each hour's share of what it was charged",
    space = KES_500_H_7000_D, from = "2026-12-04T12:00", to = "2026-12-05T18:00",
    opts = { weekend_surcharge_percent = 20 },
    hours = 30, subtotal = 1130000, tax = 180800, total = 1310800,
    lines = {
      days_line(1, 700000, "1 day × KES 7,000.00"),
      hours_line(6, 50000, "6 hours × KES 500.00"),
      { code = "weekend_surcharge", description = "Weekend surcharge 20% on 18 hours",
        quantity = 1, unit_amount = 130000, amount = 130000 },
    },
  },
  {
    -- Fri 12:00 - Sat 12:00 at the day rate, then 20 weekend hours capped at a day:
    -- 20% of (7,000 × 12/24 + 7,000) = 20% of 10,500 = 2,100
    name = "weekend surcharge on left-over hours capped at the day price",
    space = KES_500_H_7000_D, from = "2026-12-04T12:00", to = "2026-12-06T08:00",
    opts = { weekend_surcharge_percent = 20 },
    hours = 44, subtotal = 1610000, tax = 257600, total = 1867600,
    lines = {
      days_line(2, 700000, "2 days × KES 7,000.00"),
      { code = "weekend_surcharge", description = "Weekend surcharge 20% on 32 hours",
        quantity = 1, unit_amount = 210000, amount = 210000 },
    },
  },
  {
    -- a day Fri 01:00 - Sat 01:00, one hour of it on Saturday:
    -- 12.5% of 7,000 / 24 = 36.458… -> 36.46
    name = "a surcharge is rounded to the minor unit",
    space = KES_500_H_7000_D, from = "2026-12-04T01:00", to = "2026-12-05T01:00",
    opts = { weekend_surcharge_percent = "12.5" },
    hours = 24, subtotal = 703646, tax = 112583, total = 816229,
    lines = {
      days_line(1, 700000, "1 day × KES 7,000.00"),
      { code = "weekend_surcharge", description = "Weekend surcharge 12.5% on 1 hour",
        quantity = 1, unit_amount = 3646, amount = 3646 },
    },
  },
  {
    -- 12.5% of 4 minor units = 0.5 -> 1; VAT 16% of 5 = 0.8 -> 1
    name = "a surcharge is rounded half up",
    space = space(4, 0), from = "2026-12-05T10:00", to = "2026-12-05T11:00",
    opts = { weekend_surcharge_percent = 12.5 },
    hours = 1, subtotal = 5, tax = 1, total = 6,
    lines = {
      hours_line(1, 4, "1 hour × KES 0.04"),
      { code = "weekend_surcharge", description = "Weekend surcharge 12.5% on 1 hour",
        quantity = 1, unit_amount = 1, amount = 1 },
    },
  },
  {
    name = "peak hours: 17:00-20:00 on weekdays",
    space = KES_500_H, from = "2026-12-01T16:00", to = "2026-12-01T19:00",
    opts = { peak = { percent = 10, from_hour = 17, to_hour = 20, days = { 1, 2, 3, 4, 5 } } },
    hours = 3, subtotal = 160000, tax = 25600, total = 185600,
    lines = {
      hours_line(3, 50000, "3 hours × KES 500.00"),
      { code = "peak_surcharge", description = "Peak surcharge 10% on 2 hours",
        quantity = 1, unit_amount = 10000, amount = 10000 },
    },
  },
  {
    name = "peak hours: not on a Saturday when only weekdays are peak",
    space = KES_500_H, from = "2026-12-05T16:00", to = "2026-12-05T19:00",
    opts = { peak = { percent = 10, from_hour = 17, to_hour = 20, days = { 1, 2, 3, 4, 5 } } },
    hours = 3, subtotal = 150000, tax = 24000, total = 174000,
    lines = { hours_line(3, 50000, "3 hours × KES 500.00") },
  },
  {
    name = "weekend and peak surcharges both apply, each on the hours' charge",
    space = KES_500_H, from = "2026-12-05T17:00", to = "2026-12-05T19:00",
    opts = { weekend_surcharge_percent = 20, peak = { percent = 10, from_hour = 17, to_hour = 20 } },
    hours = 2, subtotal = 130000, tax = 20800, total = 150800,
    lines = {
      hours_line(2, 50000, "2 hours × KES 500.00"),
      { code = "weekend_surcharge", description = "Weekend surcharge 20% on 2 hours",
        quantity = 1, unit_amount = 20000, amount = 20000 },
      { code = "peak_surcharge", description = "Peak surcharge 10% on 2 hours",
        quantity = 1, unit_amount = 10000, amount = 10000 },
    },
  },
  {
    name = "a zero-price space costs nothing",
    space = space(0, 0), from = "2026-12-05T10:00", to = "2026-12-05T12:00",
    opts = { weekend_surcharge_percent = 20 },
    hours = 2, subtotal = 0, tax = 0, total = 0,
    lines = { hours_line(2, 0, "2 hours × KES 0.00") },
  },
  {
    name = "a space with only a day price: the hours are free (24 × 0 is cheaper)",
    space = space(0, 700000), from = "2026-12-01T10:00", to = "2026-12-02T16:00",
    hours = 30, subtotal = 0, tax = 0, total = 0,
    lines = { hours_line(30, 0, "30 hours × KES 0.00") },
  },
  {
    name = "a currency without minor units",
    space = space(5000, 0, "UGX"), from = "2026-12-01T10:00", to = "2026-12-01T12:00",
    hours = 2, subtotal = 10000, tax = 1600, total = 11600,
    lines = { hours_line(2, 5000, "2 hours × UGX 5,000") },
  },
}

for _, c in ipairs(CASES) do
  test("quote: " .. c.name, function()
    local q, err = pricing.quote(c.space, at(c.from), at(c.to), c.opts)
    assert_nil(err)
    assert_eq(c.lines, q.lines, "lines")
    assert_eq(c.hours, q.hours, "hours")
    assert_eq(c.subtotal, q.subtotal, "subtotal")
    assert_eq(c.tax, q.tax, "tax")
    assert_eq(c.total, q.total, "total")
    assert_eq(c.space.currency, q.currency, "currency")
    local sum = 0
    for _, line in ipairs(q.lines) do
      assert_eq(line.quantity * line.unit_amount, line.amount, line.code)
      assert_eq("integer", math.type(line.amount), line.code)
      sum = sum + line.amount
    end
    assert_eq(q.subtotal, sum, "the lines add up to the subtotal")
    assert_eq(q.subtotal + q.tax, q.total, "total")
  end)
end

-- VAT alone: one hour at `per_hour` minor units.
local VAT_CASES = {
  { per_hour = 25, vat = 16, tax = 4, rate = "16" },         -- 4.00 exactly
  { per_hour = 28, vat = 16, tax = 4, rate = "16" },         -- 4.48
  { per_hour = 29, vat = 16, tax = 5, rate = "16" },         -- 4.64
  { per_hour = 20, vat = "7.5", tax = 2, rate = "7.5" },     -- 1.5: half up
  { per_hour = 20, vat = 7.5, tax = 2, rate = "7.5" },       -- the same as a JSON number
  { per_hour = 100, vat = "16.5", tax = 17, rate = "16.5" }, -- 16.5: half up
  { per_hour = 4, vat = 12.5, tax = 1, rate = "12.5" },      -- 0.5: half up
  { per_hour = 3, vat = 12.5, tax = 0, rate = "12.5" },      -- 0.375
  { per_hour = 1000, vat = "7.5", tax = 75, rate = "7.5" },
  { per_hour = 50000, vat = 0, tax = 0, rate = "0" },
  { per_hour = 50000, vat = "16.25", tax = 8125, rate = "16.25" },
  { per_hour = 50000, vat = nil, tax = 8000, rate = "16" },  -- the default
}

for _, c in ipairs(VAT_CASES) do
  test(string.format("VAT %s%% on %d minor units is %d", tostring(c.vat), c.per_hour, c.tax),
    function()
      local start = at("2026-12-01T10:00")
      local q = pricing.quote(space(c.per_hour, 0), start, start + 3600, { vat_percent = c.vat })
      assert_eq(c.per_hour, q.subtotal)
      assert_eq(c.tax, q.tax)
      assert_eq(c.rate, q.tax_rate_percent)
      assert_eq(c.per_hour + c.tax, q.total)
    end)
end

test("end must be after start", function()
  local start = at("2026-12-01T10:00")
  for _, finish in ipairs({ start, start - 1, start - 3600 }) do
    local q, err = pricing.quote(KES_500_H, start, finish)
    assert_nil(q)
    assert_eq("end must be after start", err)
  end
end)

test("bad input is an error, not a quote", function()
  local start = at("2026-12-01T10:00")
  local cases = {
    { space(-1, 0), start, start + 3600, nil, "price_per_hour" },
    { space(50000, -5), start, start + 3600, nil, "price_per_day" },
    { space("500", 0), start, start + 3600, nil, "price_per_hour" },
    { space(500.5, 0), start, start + 3600, nil, "price_per_hour" },
    { KES_500_H, start, start + 3600, { vat_percent = "abc" }, "vat_percent" },
    { KES_500_H, start, start + 3600, { vat_percent = -1 }, "vat_percent" },
    { KES_500_H, start, start + 3600, { vat_percent = "7.125" }, "vat_percent" },
    { KES_500_H, start, start + 3600, { weekend_surcharge_percent = "x" }, "weekend_surcharge" },
    { KES_500_H, "2026-12-01T10:00", start + 3600, nil, "epoch seconds" },
    { KES_500_H, start, nil, nil, "epoch seconds" },
  }
  for i, c in ipairs(cases) do
    local q, err = pricing.quote(c[1], c[2], c[3], c[4])
    assert_nil(q, "case " .. i)
    assert_true(type(err) == "string" and err:find(c[5], 1, true) ~= nil,
      string.format("case %d: %s", i, tostring(err)))
  end
end)

test("a missing currency, zone and day price have defaults", function()
  local start = at("2026-12-05T10:00")
  local q = pricing.quote({ price_per_hour = 50000 }, start, start + 7200,
    { weekend_surcharge_percent = 10 })
  assert_eq("KES", q.currency)
  assert_eq(110000, q.subtotal) -- Saturday in Nairobi
end)

test("the shipped defaults", function()
  assert_eq({ vat_percent = 16, weekend_surcharge_percent = 0 }, pricing.DEFAULTS)
end)

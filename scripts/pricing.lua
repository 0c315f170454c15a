-- pricing.lua: what a booking costs. Pure: integer minor units in, a quote out, no I/O.
-- Edit it to change the price rule; `spacer reload` picks it up. A booking keeps the price
-- it was created with, so a change here never rewrites history.
--
-- The rule
--
--   1. Time is counted in started hours: 2 hours and 1 minute are 3 hours.
--   2. Every whole 24 hours cost the cheaper of 24 × price_per_hour and price_per_day.
--   3. The hours left over cost the cheaper of (their number × price_per_hour) and
--      price_per_day.
--      A price_per_day of 0 (or none) means the space has no day rate: every hour is
--      charged by the hour.
--   4. Surcharges, all off unless configured (opts below). A surcharge adds its percentage
--      to what an hour was charged, for the hours it picks by the local time at which each
--      hour starts, in the space's time zone:
--        weekend_surcharge_percent   hours starting on a Saturday or a Sunday
--        peak = { percent =, from_hour =, to_hour =, days = }
--                                    hours starting at from_hour..to_hour-1 o'clock, on
--                                    the given week days (1 = Monday .. 7 = Sunday; all
--                                    days if none are given)
--      What an hour "was charged" follows rules 2 and 3: an hour billed by the hour was
--      charged price_per_hour; an hour inside a block billed at the day rate was charged
--      its share of that block (price_per_day / 24 for a whole day, price_per_day / n for
--      n left-over hours capped at the day rate). So the day cap is applied first and a
--      weekend day at the day rate costs price_per_day plus the percentage of it. Each
--      surcharge is one line, rounded half up to the minor unit.
--   5. VAT (vat_percent, default 16; fractions such as "7.5" are fine) is added to the
--      subtotal as `tax`, rounded half up to the minor unit.
--
-- Example: 2 weekday hours at KES 500/h → subtotal 1,000.00, tax 160.00, total 1,160.00
-- (in minor units: 100000, 16000, 116000).
--
-- pricing.quote(space, start_s, end_s, opts) -> quote | nil, err
--   space   { price_per_hour = 50000, price_per_day = 700000, currency = "KES",
--             timezone = "Africa/Nairobi" }     (prices in minor units)
--   start_s, end_s   epoch seconds
--   opts    { vat_percent = 16, weekend_surcharge_percent = 0, peak = nil }
--   quote   { currency = "KES", hours = 2, subtotal = 100000, tax = 16000, total = 116000,
--             tax_rate_percent = "16",
--             lines = { { code = "hours", description = "2 hours × KES 500.00",
--                         quantity = 2, unit_amount = 50000, amount = 100000 } } }
--   Every line has amount = quantity × unit_amount.
local money = require("lib.money")

local _M = {}

_M.DEFAULTS = {
  vat_percent = 16,
  weekend_surcharge_percent = 0,
}

local DEFAULT_CURRENCY = "KES"
local DEFAULT_TIMEZONE = "Africa/Nairobi"
local HOUR = 3600
local DAY_HOURS = 24

-- Numbers ----------------------------------------------------------------------

-- a / b rounded half up, for a >= 0 and b > 0
local function round_half_up(a, b)
  return (2 * a + b) // (2 * b)
end

local function gcd(a, b)
  while b ~= 0 do
    a, b = b, a % b
  end
  return a
end

local function lcm(a, b)
  return a // gcd(a, b) * b
end

-- 16 -> 1600; "7.5" -> 750; basis points, exactly
local function basis_points(value, name)
  local bp = money.parse_decimal(value, 2)
  if not bp or bp < 0 then
    return nil, name .. " must be a percentage of at least 0, with at most 2 decimals"
  end
  return bp
end

-- 1600 -> "16"; 750 -> "7.5"
local function percent_text(bp)
  local text = money.decimal(bp, 2)
  return (text:gsub("%.?0+$", ""))
end

local function price(space, name)
  local value = space[name] or 0
  local minor = math.type(value) and math.tointeger(value)
  if not minor or minor < 0 then
    return nil, name .. " must be a whole number of minor units, at least 0"
  end
  return minor
end

local function plural(n, word)
  if n == 1 then
    return "1 " .. word
  end
  return n .. " " .. word .. "s"
end

-- Surcharges -------------------------------------------------------------------

-- Each picks hours by `t`, the local time at the start of the hour (spacer.time.fields:
-- year, month, day, hour, min, wday with 1 = Monday .. 7 = Sunday). Add one here.
local SURCHARGES = {
  {
    code = "weekend_surcharge",
    label = "Weekend surcharge",
    percent = function(opts)
      return opts.weekend_surcharge_percent
    end,
    applies = function(t)
      return t.wday == 6 or t.wday == 7
    end,
  },
  {
    code = "peak_surcharge",
    label = "Peak surcharge",
    percent = function(opts)
      return opts.peak and opts.peak.percent
    end,
    applies = function(t, opts)
      local peak = opts.peak
      if t.hour < (peak.from_hour or 0) or t.hour >= (peak.to_hour or 24) then
        return false
      end
      if not peak.days then
        return true
      end
      for _, wday in ipairs(peak.days) do
        if t.wday == wday then
          return true
        end
      end
      return false
    end,
  },
}

-- Rules 1 to 3. Returns the lines, and the blocks they charge: { hours =, cost = } for
-- each whole day, then one for the hours left over (what rule 4 needs).
local function charge_time(hours, per_hour, per_day, currency)
  local lines, blocks = {}, {}
  local function add_line(code, word, quantity, unit_amount)
    lines[#lines + 1] = {
      code = code,
      description = plural(quantity, word) .. " × " .. money.format(unit_amount, currency),
      quantity = quantity,
      unit_amount = unit_amount,
      amount = quantity * unit_amount,
    }
  end

  local days, rest = hours // DAY_HOURS, hours % DAY_HOURS
  local day_rate = per_day > 0 and per_day < DAY_HOURS * per_hour
  if not day_rate then
    add_line("hours", "hour", hours, per_hour)
    blocks[1] = { hours = hours, cost = hours * per_hour }
    return lines, blocks
  end

  local rest_at_day_rate = per_day < rest * per_hour
  for _ = 1, days do
    blocks[#blocks + 1] = { hours = DAY_HOURS, cost = per_day }
  end
  if rest_at_day_rate then
    blocks[#blocks + 1] = { hours = rest, cost = per_day }
    add_line("days", "day", days + 1, per_day)
    return lines, blocks
  end
  if days > 0 then
    add_line("days", "day", days, per_day)
  end
  if rest > 0 then
    blocks[#blocks + 1] = { hours = rest, cost = rest * per_hour }
    add_line("hours", "hour", rest, per_hour)
  end
  return lines, blocks
end

-- Rule 4, one surcharge: how many hours it picks and the amount, rounded half up. Each
-- picked hour adds bp basis points of its share of its block: block cost / block hours.
-- The shares are summed exactly over a common denominator before the one rounding.
local function surcharge_amount(surcharge, bp, blocks, start_s, timezone, opts)
  local den = 1
  for _, block in ipairs(blocks) do
    den = lcm(den, block.hours)
  end
  local num, hour, picked = 0, 0, 0
  for _, block in ipairs(blocks) do
    local in_block = 0
    for _ = 1, block.hours do
      if surcharge.applies(spacer.time.fields(start_s + hour * HOUR, timezone), opts) then
        in_block = in_block + 1
      end
      hour = hour + 1
    end
    num = num + block.cost * in_block * (den // block.hours)
    picked = picked + in_block
  end
  return picked, round_half_up(num * bp, den * 10000)
end

-- The quote --------------------------------------------------------------------

function _M.quote(space, start_s, end_s, opts)
  opts = opts or {}
  if math.type(start_s) ~= "integer" or math.type(end_s) ~= "integer" then
    return nil, "start and end must be epoch seconds"
  end
  if end_s <= start_s then
    return nil, "end must be after start"
  end
  local per_hour, err = price(space, "price_per_hour")
  if not per_hour then
    return nil, err
  end
  local per_day
  per_day, err = price(space, "price_per_day")
  if not per_day then
    return nil, err
  end
  local vat_bp
  vat_bp, err = basis_points(opts.vat_percent or _M.DEFAULTS.vat_percent, "vat_percent")
  if not vat_bp then
    return nil, err
  end
  local currency = (space.currency or DEFAULT_CURRENCY):upper()
  local timezone = space.timezone or DEFAULT_TIMEZONE

  -- Rules 1 to 3: started hours, whole days, the hours left over.
  local hours = (end_s - start_s + HOUR - 1) // HOUR
  local lines, blocks = charge_time(hours, per_hour, per_day, currency)

  -- Rule 4: surcharges on the hours they pick.
  for _, surcharge in ipairs(SURCHARGES) do
    local percent = surcharge.percent(opts)
    if percent ~= nil then
      local bp
      bp, err = basis_points(percent, surcharge.code .. " percent")
      if not bp then
        return nil, err
      end
      local picked, amount = 0, 0
      if bp > 0 then
        picked, amount = surcharge_amount(surcharge, bp, blocks, start_s, timezone, opts)
      end
      if amount > 0 then
        lines[#lines + 1] = {
          code = surcharge.code,
          description = string.format("%s %s%% on %s", surcharge.label, percent_text(bp),
            plural(picked, "hour")),
          quantity = 1,
          unit_amount = amount,
          amount = amount,
        }
      end
    end
  end

  -- Rule 5: VAT on the subtotal.
  local subtotal = 0
  for _, line in ipairs(lines) do
    subtotal = subtotal + line.amount
  end
  local tax = round_half_up(subtotal * vat_bp, 10000)

  return {
    currency = currency,
    lines = lines,
    hours = hours,
    subtotal = subtotal,
    tax = tax,
    tax_rate_percent = percent_text(vat_bp),
    total = subtotal + tax,
  }
end

return _M

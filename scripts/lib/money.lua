-- lib/money.lua: amounts as integer minor units (cents), never floats.
--
--   money.parse("500.50", "KES")  --> 50050
--   money.parse(500.5, "KES")     --> 50050    (a JSON number)
--   money.parse(500.123, "KES")   --> nil, "must have at most 2 decimal places"
--   money.to_major(50050, "KES")  --> 500.5    (for JSON output only)
--   money.format(700000, "KES")   --> "KES 7,000.00"
--   money.sql_factor("b.currency")  --> SQL: 100 for KES (10^exponent), for SQL that divides
--
-- Arithmetic on money happens on the integers. The one float is the value handed to the
-- JSON encoder by to_major. Signs are kept: a schema's `min` decides whether -5 is allowed.
local _M = {}

local DEFAULT_EXPONENT = 2

-- ISO 4217 minor-unit exponents. A currency not listed has 2.
local EXPONENTS = {
  KES = 2, TZS = 2, USD = 2, EUR = 2, GBP = 2, ZAR = 2, NGN = 2, GHS = 2, ETB = 2,
  INR = 2, CNY = 2, AED = 2, CHF = 2, CAD = 2, AUD = 2,
  UGX = 0, RWF = 0, BIF = 0, DJF = 0, XAF = 0, XOF = 0, JPY = 0, KRW = 0, CLP = 0,
  VND = 0, ISK = 0,
  BHD = 3, KWD = 3, OMR = 3, JOD = 3, TND = 3, LYD = 3, IQD = 3,
}

-- Largest magnitude accepted, in minor units: 2^53 - 1, so that every amount is exact
-- both as a bigint and as a JSON number.
local MAX_MINOR = 9007199254740991

-- Largest float accepted: above it a double no longer tells 3 decimals apart, so a
-- refused 500.123 could pass as 500.12. Numeric strings have no such limit.
local MAX_FLOAT = 1e12

-- Longest numeric string looked at; longer ones are refused before any pattern runs.
local MAX_TEXT = 64

local POW10 = { [0] = 1, 10, 100, 1000, 10000, 100000, 1000000 }

local function upper_code(currency)
  if type(currency) ~= "string" then
    return nil
  end
  return currency:upper()
end

-- money.exponent("KES") -> 2; money.exponent("UGX") -> 0; unknown or nil -> 2
function _M.exponent(currency)
  return EXPONENTS[upper_code(currency)] or DEFAULT_EXPONENT
end

-- "500", "500.5", "-3", "+3"; text only, after trimming.
local function parse_text(text, places)
  local sign, whole, dot, fraction = text:match("^([+-]?)(%d+)(%.?)(%d*)$")
  if not whole or (dot == "." and fraction == "") then
    return nil, "must be an amount"
  end
  local extra = fraction:sub(places + 1)
  if extra:find("[1-9]") then
    if places == 0 then
      return nil, "must be a whole amount"
    end
    return nil, string.format("must have at most %d decimal places", places)
  end
  fraction = fraction:sub(1, places)
  fraction = fraction .. string.rep("0", places - #fraction)
  local digits = (whole .. fraction):gsub("^0+(%d)", "%1")
  if #digits > 16 then
    return nil, "is too large"
  end
  local n = math.tointeger(tonumber(digits))
  if not n or n > MAX_MINOR then
    return nil, "is too large"
  end
  if sign == "-" then
    n = -n
  end
  return n
end

-- money.parse_decimal(value, places) -> integer value * 10^places | nil, err
-- value: a Lua integer, a float (as decoded from JSON) or a numeric string. Exact: no
-- float arithmetic. Used for money (places = the currency's exponent) and for percentages
-- in basis points (places = 2: "7.5" -> 750).
function _M.parse_decimal(value, places)
  places = places or DEFAULT_EXPONENT
  local factor = POW10[places]
  if not factor then
    error("money.parse_decimal: places must be 0..6", 2)
  end
  local kind = math.type(value)
  if kind == "integer" then
    if value > MAX_MINOR // factor or value < -(MAX_MINOR // factor) then
      return nil, "is too large"
    end
    return value * factor
  end
  if kind == "float" then
    if value ~= value or value == math.huge or value == -math.huge then
      return nil, "must be an amount"
    end
    if math.abs(value) >= MAX_FLOAT then
      return nil, "is too large"
    end
    -- The decimal the JSON text meant is the one, rounded to `places`, that reads back as
    -- the very same float: 500.5 -> "500.50"; 500.123 -> "500.12", which is not 500.123.
    local text = string.format("%." .. places .. "f", value)
    if tonumber(text) ~= value then
      if places == 0 then
        return nil, "must be a whole amount"
      end
      return nil, string.format("must have at most %d decimal places", places)
    end
    return parse_text(text, places)
  end
  if type(value) == "string" and #value <= MAX_TEXT then
    local text = value:match("^%s*(.-)%s*$")
    return parse_text(text, places)
  end
  return nil, "must be an amount"
end

-- money.parse(value, currency) -> integer minor units | nil, err
function _M.parse(value, currency)
  return _M.parse_decimal(value, _M.exponent(currency))
end

-- money.to_major(50000, "KES") -> 500.0: a float, for JSON output only. Exact for every
-- amount parse accepts (the division is correctly rounded, so 12345 -> 123.45).
function _M.to_major(minor, currency)
  return minor / POW10[_M.exponent(currency)]
end

-- money.sql_factor(currency) -> an SQL integer expression: 10^exponent of the currency in the
-- SQL expression currency (a column), as money.exponent says: "b.currency" -> (CASE WHEN
-- b.currency IN ('UGX', ...) THEN 1 WHEN ... THEN 1000 ELSE 100 END).
function _M.sql_factor(currency)
  local by = {}
  for code, e in pairs(EXPONENTS) do
    if e ~= DEFAULT_EXPONENT then
      by[e] = by[e] or {}
      table.insert(by[e], "'" .. code .. "'")
    end
  end
  local exps, parts = {}, {}
  for e in pairs(by) do
    exps[#exps + 1] = e
  end
  table.sort(exps) -- one text for every worker: the statement is prepared once
  for _, e in ipairs(exps) do
    table.sort(by[e])
    parts[#parts + 1] = string.format("WHEN %s IN (%s) THEN %d", currency,
      table.concat(by[e], ", "), POW10[e])
  end
  return string.format("(CASE %s ELSE %d END)", table.concat(parts, " "),
    POW10[DEFAULT_EXPONENT])
end

local function group_thousands(digits)
  local head = #digits % 3
  local parts = {}
  if head > 0 then
    parts[#parts + 1] = digits:sub(1, head)
  end
  for i = head + 1, #digits, 3 do
    parts[#parts + 1] = digits:sub(i, i + 2)
  end
  return table.concat(parts, ",")
end

-- money.decimal(50050, 2) -> "500.50"; money.decimal(-5, 2) -> "-0.05". Integer-only.
function _M.decimal(minor, places, grouped)
  local sign = minor < 0 and "-" or ""
  local digits = tostring(minor < 0 and -minor or minor)
  if #digits <= places then
    digits = string.rep("0", places - #digits + 1) .. digits
  end
  local whole = digits:sub(1, #digits - places)
  local fraction = digits:sub(#digits - places + 1)
  if grouped then
    whole = group_thousands(whole)
  end
  if places == 0 then
    return sign .. whole
  end
  return sign .. whole .. "." .. fraction
end

-- money.format(700000, "KES") -> "KES 7,000.00"; money.format(50000, "UGX") -> "UGX 50,000"
function _M.format(minor, currency)
  local code = upper_code(currency) or "KES"
  return code .. " " .. _M.decimal(minor, _M.exponent(code), true)
end

return _M

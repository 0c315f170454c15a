-- lib/schema.lua: declarative validation of JSON bodies and query strings.
--
--   local cleaned, fields = schema.validate({
--     title = { type = "string", required = true, max_length = 200 },
--     capacity = { type = "integer", required = true, min = 1 },
--     price_per_hour = { type = "money", required = true, min = 0 },
--     id = { readonly = true },
--   }, req.body, { compat = req.compat, partial = false })
--   -- cleaned: { title = "Loft", capacity = 12, price_per_hour = 50000 }
--   -- or nil and fields: { capacity = "must be at least 1", id = "may not be set" }
--
-- A rule (every key optional):
--   type        "string" | "integer" | "number" | "boolean" | "money" | "array" |
--               "datetime" | "email"; none: any value, taken as it is
--   required    missing or blank is "is required"; with opts.partial a missing field is
--               fine, a blank string or a null is still refused
--   nullable    JSON null is accepted and kept as spacer.json.null
--   readonly    the caller may not set it: "may not be set"; dropped with opts.compat
--   default     used when the field is missing (not with opts.partial)
--   min, max    integer, number; money in minor units
--   min_length, max_length   strings in characters; arrays in items
--   enum        list of allowed values: "must be one of: client, owner"
--   trim        strings are trimmed unless trim = false
--   lower       lower-cased after trimming (email always is)
--   items       the rule of each item of an array
--   split       arrays: a string is split on this separator ("wifi, projector" with ",")
--   currency    money: the currency code (minor units follow it: KES 2, UGX 0)
--   currency_field   money without `currency`: the body field naming the currency
--               ("currency"); when absent or not a code, opts.currency, else KES
--   check       function(value) -> nil | message, run on the cleaned value
--
-- Text (string, email, datetime, and array items of those types) never contains a NUL
-- character: PostgreSQL text cannot hold one, so it is refused, never stored cut short.
-- Numbers may come as numeric strings ("12", "500.00"): web forms send them. A blank string
-- in a non-string field counts as missing. JSON null in a field that is not nullable is
-- missing too, except that a required field may not be nulled ("must not be null" in a
-- PATCH). Unknown fields are dropped. Messages are short and lower-case; the field name is
-- the key.
local money = require("lib.money")

local _M = {}

local SPACER = rawget(_ENV, "spacer")
local JSON = SPACER and SPACER.json

-- spacer.json.null, or a stand-in when this file runs outside Spacer.
local NULL = JSON and JSON.null or setmetatable({}, {
  __name = "json.null",
  __tostring = function()
    return "null"
  end,
})
_M.NULL = NULL

local mark_array = JSON and JSON.array or function(t)
  return t
end

local function is_json_array(t)
  return JSON ~= nil and JSON.is_array ~= nil and JSON.is_array(t)
end

local DEFAULT_CURRENCY = "KES"
local MAX_SAFE_INTEGER = 9007199254740991 -- 2^53 - 1: exact as a JSON number
local MAX_EMAIL_LENGTH = 254
local MAX_NUMERIC_TEXT = 64 -- longer "numbers" are refused before any pattern runs
local DEFAULT_PER_PAGE = 20
local MAX_PER_PAGE = 100

local TEXT_TYPES = { string = true, email = true, datetime = true }

-- Helpers --------------------------------------------------------------------

local SPACE = { [9] = true, [10] = true, [11] = true, [12] = true, [13] = true, [32] = true }

-- Linear on any input (a "%s+$" pattern is quadratic on a long run of spaces).
local function trim(s)
  local first = s:find("%S")
  if not first then
    return ""
  end
  local last = #s
  while SPACE[s:byte(last)] do
    last = last - 1
  end
  return s:sub(first, last)
end

local function plural(n, word)
  if n == 1 then
    return n .. " " .. word
  end
  return n .. " " .. word .. "s"
end

local function show_number(n)
  if math.type(n) == "float" and n == math.floor(n) and math.abs(n) < 1e15 then
    return string.format("%d", n)
  end
  return tostring(n)
end

-- "12", "-3", "12.5", " 7 " -> a Lua number; anything else (hex, "1e3", "inf") -> nil
local function numeric(value)
  if math.type(value) then
    if value ~= value or value == math.huge or value == -math.huge then
      return nil
    end
    return value
  end
  if type(value) ~= "string" or #value > MAX_NUMERIC_TEXT then
    return nil
  end
  local text = trim(value)
  if text:match("^[+-]?%d+$") or text:match("^[+-]?%d+%.%d+$") then
    return tonumber(text)
  end
  return nil
end

local function check_range(n, rule, show)
  show = show or show_number
  if rule.min and n < rule.min then
    return "must be at least " .. show(rule.min)
  end
  if rule.max and n > rule.max then
    return "must be at most " .. show(rule.max)
  end
  return nil
end

local function check_length(len, rule, unit)
  if rule.min_length and len < rule.min_length then
    return "must be at least " .. plural(rule.min_length, unit)
  end
  if rule.max_length and len > rule.max_length then
    return "must be at most " .. plural(rule.max_length, unit)
  end
  return nil
end

local function valid_email(s)
  if #s > MAX_EMAIL_LENGTH then
    return false
  end
  local user, domain = s:match("^([^@]+)@([^@]+)$")
  if not user or #user > 64 then
    return false
  end
  if not user:match("^[%w!#$%%&'*+/=?^_`{|}~.-]+$") or user:find("..", 1, true)
      or user:sub(1, 1) == "." or user:sub(-1) == "." then
    return false
  end
  local labels = 0
  for label in (domain .. "."):gmatch("(.-)%.") do
    if #label == 0 or #label > 63 or not label:match("^[%w-]+$")
        or label:sub(1, 1) == "-" or label:sub(-1) == "-" then
      return false
    end
    labels = labels + 1
  end
  return labels >= 2 and domain:match("%.(%a%a+)$") ~= nil
end

-- YYYY-MM-DDTHH:MM[:SS[.fff]] with an optional Z, ±HH, ±HHMM or ±HH:MM
local function valid_datetime(s)
  local y, mo, d, h, mi, rest = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)[Tt ](%d%d):(%d%d)(.*)$")
  if not y then
    return false
  end
  local sec, zone = rest:match("^:(%d%d)(.*)$")
  if sec then
    rest = zone:gsub("^[.,]%d+", "", 1)
  end
  if not (rest == "" or rest == "Z" or rest == "z" or rest:match("^[+-]%d%d$")
      or rest:match("^[+-]%d%d:?%d%d$")) then
    return false
  end
  mo, d, h, mi, sec = tonumber(mo), tonumber(d), tonumber(h), tonumber(mi), tonumber(sec or 0)
  return mo >= 1 and mo <= 12 and d >= 1 and d <= 31 and h <= 23 and mi <= 59 and sec <= 60
end

local function split(text, sep)
  local list, start = {}, 1
  while true do
    local i, j = text:find(sep, start, true)
    local item = trim(text:sub(start, (i or 0) - 1))
    if item ~= "" then
      list[#list + 1] = item
    end
    if not i then
      return list
    end
    start = j + 1
  end
end

local function is_list(t)
  local n = 0
  for k in pairs(t) do
    if math.type(k) ~= "integer" or k < 1 then
      return false
    end
    n = n + 1
  end
  return n == #t
end

local function currency_of(rule, ctx)
  if rule.currency then
    return rule.currency
  end
  local given = rule.currency_field and ctx.input[rule.currency_field]
  if type(given) == "string" and trim(given):match("^%a%a%a$") then
    return trim(given):upper()
  end
  return ctx.opts.currency or DEFAULT_CURRENCY
end

-- Types: each returns the cleaned value, or nil and a message ---------------------------

local TYPES = {}

function TYPES.string(value, rule)
  if type(value) ~= "string" then
    return nil, "must be a string"
  end
  if not utf8.len(value) then
    return nil, "must be valid UTF-8"
  end
  if value:find("\0", 1, true) then
    return nil, "must not contain a NUL character" -- PostgreSQL text cannot hold one
  end
  if rule.trim ~= false then
    value = trim(value)
  end
  if rule.lower then
    value = value:lower()
  end
  if rule.required and value == "" then
    return nil, "is required"
  end
  local err = check_length(utf8.len(value), rule, "character")
  if err then
    return nil, err
  end
  return value
end

function TYPES.email(value, rule)
  local s, err = TYPES.string(value, rule)
  if not s then
    return nil, err
  end
  s = s:lower()
  if not valid_email(s) then
    return nil, "must be a valid email address"
  end
  return s
end

function TYPES.datetime(value, rule)
  local s, err = TYPES.string(value, rule)
  if not s then
    return nil, err
  end
  if not valid_datetime(s) then
    return nil, "must be a date and time like 2026-12-01T10:00"
  end
  return s
end

function TYPES.integer(value, rule)
  local n = numeric(value)
  n = n and math.tointeger(n)
  if not n then
    return nil, "must be an integer"
  end
  if n > MAX_SAFE_INTEGER or n < -MAX_SAFE_INTEGER then
    return nil, "is too large"
  end
  local err = check_range(n, rule)
  if err then
    return nil, err
  end
  return n
end

function TYPES.number(value, rule)
  local n = numeric(value)
  if not n then
    return nil, "must be a number"
  end
  local err = check_range(n, rule)
  if err then
    return nil, err
  end
  return n
end

function TYPES.money(value, rule, ctx)
  if type(value) ~= "string" and not math.type(value) then
    return nil, "must be an amount"
  end
  local currency = currency_of(rule, ctx)
  local minor, err = money.parse(value, currency)
  if not minor then
    return nil, err
  end
  local places = money.exponent(currency)
  err = check_range(minor, rule, function(limit)
    local text = money.decimal(limit, places)
    if text:find(".", 1, true) then
      text = text:gsub("0+$", ""):gsub("%.$", "")
    end
    return text
  end)
  if err then
    return nil, err
  end
  return minor
end

function TYPES.boolean(value)
  if type(value) == "boolean" then
    return value
  end
  if type(value) == "string" then
    local word = trim(value):lower()
    if word == "true" then
      return true
    end
    if word == "false" then
      return false
    end
  end
  return nil, "must be true or false"
end

local check_value

function TYPES.array(value, rule, ctx)
  if type(value) == "string" and rule.split then
    value = split(value, rule.split)
  end
  if type(value) ~= "table" or value == NULL or not is_list(value) then
    return nil, "must be an array"
  end
  local err = check_length(#value, rule, "item")
  if err then
    return nil, err
  end
  local out = {}
  for i, item in ipairs(value) do
    local cleaned = item
    if rule.items then
      if item == NULL and not rule.items.nullable then
        return nil, string.format("item %d must not be null", i)
      end
      cleaned, err = check_value(item, rule.items, ctx)
      if cleaned == nil then
        return nil, string.format("item %d %s", i, err)
      end
    end
    out[i] = cleaned
  end
  return mark_array(out)
end

function TYPES.any(value)
  return value
end

-- One present, non-null value against its rule (type, then enum, then check).
function check_value(value, rule, ctx)
  if value == NULL then
    return NULL
  end
  local kind = rule.type or "any"
  local cleaned, err = TYPES[kind](value, rule, ctx)
  if cleaned == nil then
    return nil, err
  end
  if rule.enum then
    local found = false
    for _, allowed in ipairs(rule.enum) do
      if cleaned == allowed then
        found = true
        break
      end
    end
    if not found then
      local names = {}
      for i, allowed in ipairs(rule.enum) do
        names[i] = tostring(allowed)
      end
      return nil, "must be one of: " .. table.concat(names, ", ")
    end
  end
  if rule.check then
    err = rule.check(cleaned)
    if err then
      return nil, err
    end
  end
  return cleaned
end

local function copy(v)
  if type(v) ~= "table" or v == NULL then
    return v
  end
  local out = {}
  for k, item in pairs(v) do
    out[k] = copy(item)
  end
  return setmetatable(out, getmetatable(v))
end

-- One field: returns keep (boolean), cleaned value, error message.
local function check_field(rule, value, ctx)
  if value ~= nil and rule.readonly then
    if ctx.opts.compat then
      return false
    end
    return false, nil, "may not be set"
  end
  local kind = rule.type or "any"
  if value == NULL and not rule.nullable then
    if rule.required and ctx.opts.partial then
      return false, nil, "must not be null"
    end
    value = nil
  end
  if type(value) == "string" and not TEXT_TYPES[kind] and trim(value) == ""
      and not (kind == "array" and rule.split) then
    value = nil -- a form field left blank
  end
  if value == nil then
    if ctx.opts.partial then
      return false
    end
    if rule.required then
      return false, nil, "is required"
    end
    if rule.default ~= nil then
      return true, copy(rule.default)
    end
    return false
  end
  local cleaned, err = check_value(value, rule, ctx)
  if cleaned == nil then
    return false, nil, err
  end
  return true, cleaned
end

local function check_spec(spec)
  for name, rule in pairs(spec) do
    if type(rule) ~= "table" then
      error(string.format("schema: the rule of \"%s\" must be a table", tostring(name)), 3)
    end
    if rule.type and not TYPES[rule.type] then
      error(string.format("schema: \"%s\" has an unknown type \"%s\"", tostring(name),
        tostring(rule.type)), 3)
    end
    if rule.items and rule.items.type and not TYPES[rule.items.type] then
      error(string.format("schema: the items of \"%s\" have an unknown type \"%s\"",
        tostring(name), tostring(rule.items.type)), 3)
    end
  end
end

local function run(spec, input, opts)
  local ctx = { input = input, opts = opts }
  local cleaned, fields, failed = {}, {}, false
  for name, rule in pairs(spec) do
    local keep, value, err = check_field(rule, input[name], ctx)
    if err then
      fields[name] = err
      failed = true
    elseif keep then
      cleaned[name] = value
    end
  end
  if failed then
    return nil, fields
  end
  return cleaned, nil
end

local function is_object(input)
  if type(input) ~= "table" or input == NULL or is_json_array(input) then
    return false
  end
  for k in pairs(input) do
    if type(k) ~= "string" then
      return false
    end
  end
  return true
end

-- API ------------------------------------------------------------------------

-- schema.validate(spec, input, opts) -> cleaned, nil | nil, fields
-- input: the decoded JSON body (nil for an empty body, which counts as {}).
-- opts: { compat = bool, partial = bool, currency = "KES" }.
function _M.validate(spec, input, opts)
  check_spec(spec)
  if input == nil then
    input = {}
  end
  if not is_object(input) then
    return nil, { _body = "must be a JSON object" }
  end
  return run(spec, input, opts or {})
end

-- schema.query(spec, query, opts) -> cleaned, nil | nil, fields
-- query: the query string as a table of strings. Same rules as validate.
function _M.query(spec, query, opts)
  check_spec(spec)
  if type(query) ~= "table" then
    query = {}
  end
  opts = opts or {}
  return run(spec, query, { currency = opts.currency })
end

-- schema.page_spec(opts) -> the spec of page and per_page: page from 1 (default 1); per_page
-- 1..100 (default 20). opts: { default_per_page =, max_per_page = }.
function _M.page_spec(opts)
  opts = opts or {}
  return {
    page = { type = "integer", min = 1, default = 1, description = "page number, from 1" },
    per_page = {
      type = "integer",
      min = 1,
      max = opts.max_per_page or MAX_PER_PAGE,
      default = opts.default_per_page or DEFAULT_PER_PAGE,
      description = "items per page",
    },
  }
end

-- schema.page(query[, spec_or_opts]) -> page, per_page, offset | nil, fields
-- The second argument: a schema.page_spec, or the opts of one (default: schema.page_spec()).
function _M.page(query, spec_or_opts)
  local spec = spec_or_opts
  if not (spec and spec.page and spec.per_page) then
    spec = _M.page_spec(spec_or_opts)
  end
  local cleaned, fields = _M.query(spec, query)
  if not cleaned then
    return nil, fields
  end
  return cleaned.page, cleaned.per_page, (cleaned.page - 1) * cleaned.per_page
end

return _M

-- prelude.lua: the part of the `spacer` module written in Lua, carried inside the binary.
-- It knows routes, errors, tokens and settings; never a table name or a business rule.
-- Called once per generation with the C internals (`core`) and the module being built.
local core, spacer, conf_values, conf_lines = ...

local type, pairs, ipairs, error, setmetatable, getmetatable, tostring, select =
  type, pairs, ipairs, error, setmetatable, getmetatable, tostring, select
local format, concat = string.format, table.concat

-- Errors ---------------------------------------------------------------------

local HttpError = { __name = "spacer.error" }
HttpError.__index = HttpError
HttpError.__tostring = function(e)
  return format("http %d: %s", e.status, e.message)
end

local DEFAULT_CODES = {
  [400] = "bad_request", [401] = "unauthorized", [403] = "forbidden", [404] = "not_found",
  [405] = "method_not_allowed", [409] = "conflict", [413] = "payload_too_large",
  [415] = "unsupported_media_type", [422] = "validation_failed", [429] = "too_many_requests",
  [500] = "internal_error", [503] = "service_unavailable",
}

local DETAIL_KEYS = { code = true, fields = true, headers = true, extra = true }

-- spacer.error(status, message[, details]) raises an HTTP error. details is either
-- { code =, fields =, headers =, extra = } or, as a shorthand, the `fields` table itself.
function spacer.error(status, message, details)
  local e = { status = status, message = message or "error" }
  if type(details) == "table" then
    local is_opts = next(details) ~= nil
    for k in pairs(details) do
      if not DETAIL_KEYS[k] then is_opts = false break end
    end
    if is_opts then
      e.code, e.fields, e.headers, e.extra = details.code, details.fields, details.headers, details.extra
    else
      e.fields = details
    end
  elseif type(details) == "string" then
    e.code = details
  end
  e.code = e.code or DEFAULT_CODES[status] or "error"
  error(setmetatable(e, HttpError), 2)
end

function spacer.is_error(v)
  return getmetatable(v) == HttpError
end
core.set_error_mt(HttpError)

-- Routes ---------------------------------------------------------------------

local METHODS = { GET = true, POST = true, PUT = true, PATCH = true, DELETE = true }

-- A list of methods or paths. A path written { "/api/x", compat = true } is one path,
-- not a list: it has a key besides its position.
local function as_list(v)
  if type(v) ~= "table" or v.compat ~= nil then return { v } end
  return v
end

-- spacer.route(method, path, [opts,] handler). method and path may be lists.
-- opts: auth (bool), roles ({"owner", "admin"}: implies auth), body (a schema for the
-- validator), partial (PATCH semantics for the body), compat (a path of the old web app),
-- raw_body (no JSON parsing: req.raw_body), summary, description, tags, responses,
-- etag (GET answers carry an ETag; a matching If-None-Match gets a 304 without a body),
-- cache (a list of tags, for example table names: the route is public, its answer depends on
-- nothing but its path and query, and may be served from the cache until one of the tags
-- changes — see spacer.cache; implies etag).
function spacer.route(method, path, opts, handler)
  if handler == nil then opts, handler = {}, opts end
  if type(handler) ~= "function" then error("spacer.route: handler must be a function", 2) end
  if type(opts) ~= "table" then error("spacer.route: options must be a table", 2) end
  if opts.cache ~= nil then
    if type(opts.cache) ~= "table" or #opts.cache == 0 then
      error("spacer.route: cache must be a list of tags", 2)
    end
    if opts.auth or opts.roles then
      error("spacer.route: a route that needs a token cannot be cached (its answers are private)", 2)
    end
    opts.etag = true
  end
  if opts.roles then
    opts.auth = true
    local set = {}
    for _, r in ipairs(opts.roles) do set[r] = true end
    opts.role_set = set
  end
  for _, m in ipairs(as_list(method)) do
    if not METHODS[m] then error("spacer.route: unknown method " .. tostring(m), 2) end
    for _, p in ipairs(as_list(path)) do
      local o = opts
      if type(p) == "table" then -- { "/api/spaces", compat = true }
        o = setmetatable({ compat = p.compat }, { __index = opts })
        p = p[1]
      end
      if o.cache and m ~= "GET" then
        error("spacer.route: only GET answers can be cached", 2)
      end
      core.add_route(m, p, { handler = handler, opts = o }, o.auth and true or false,
        o.roles, o.compat and true or false, o.cache, (o.etag and m == "GET") and true or false)
    end
  end
end

for _, m in ipairs({ "get", "post", "put", "patch", "delete" }) do
  local upper = m:upper()
  spacer[m] = function(path, opts, handler)
    return spacer.route(upper, path, opts, handler)
  end
end

-- Hooks the scripts install -------------------------------------------------------

local validator, resolver

-- fn(spec, input, { compat =, partial = }) -> cleaned | nil, fields
function spacer.set_validator(fn) validator = fn end
-- fn(claims) -> { id =, role = } | nil: maps a verified token to its user (nil: 401)
function spacer.on_auth(fn) resolver = fn end

-- The body of every request's coroutine.
local function run(entry, req, claims)
  local opts = entry.opts
  if claims then
    local user
    if resolver then
      user = resolver(claims)
    elseif claims.role ~= "" then
      user = { id = claims.sub, role = claims.role }
    end
    if not user then
      spacer.error(401, "invalid or expired token", "invalid_token")
    end
    req.user = user
    if opts.role_set and not opts.role_set[user.role] then
      spacer.error(403, "this requires the role " .. concat(opts.roles, " or "), "forbidden")
    end
  end
  if opts.body and validator then
    local body, fields = validator(opts.body, req.body, { compat = req.compat, partial = opts.partial })
    if body == nil then
      spacer.error(422, "validation failed", { code = "validation_failed", fields = fields })
    end
    req.body = body
  end
  return entry.handler(req)
end
core.set_runner(run)

-- Transactions ---------------------------------------------------------------

do
  local db = spacer.db
  local begin, commit, rollback = db._begin, db._commit, db._rollback
  db._begin, db._commit, db._rollback = nil, nil, nil
  local pack, unpack = table.pack, table.unpack

  -- spacer.db.tx(fn): BEGIN on one pinned connection; every spacer.db call of this request
  -- goes to it until fn returns (COMMIT) or raises (ROLLBACK, then the error goes on).
  function db.tx(fn)
    begin()
    local r = pack(pcall(fn, db))
    if r[1] then
      commit()
      return unpack(r, 2, r.n)
    end
    pcall(rollback) -- if this fails too, the core rolls back when the request ends
    error(r[2], 0)
  end
end

-- Settings -------------------------------------------------------------------

local declared = {}

local function read_only(t, name)
  return setmetatable({}, {
    __index = t,
    __newindex = function() error(name .. " is read-only", 2) end,
    __pairs = function() return next, t, nil end,
  })
end

-- spacer.config.declare(section, defaults) -> the section's settings: the file's values over
-- the defaults, each converted to the default's type. A key the scripts did not declare
-- stops the load with spacer.conf:LINE.
local function declare(section, defaults)
  local given, lines, out = conf_values[section] or {}, conf_lines[section] or {}, {}
  declared[section] = true
  for k, v in pairs(defaults) do out[k] = v end
  for k, v in pairs(given) do
    local def = defaults[k]
    local where = format("%s:%d", core.conf_path, lines[k] or 0)
    if def == nil then
      error(format("%s: unknown key \"%s\" in [%s]", where, k, section), 0)
    end
    if type(def) == "number" then
      local n = tonumber(v)
      if n == nil then error(format("%s: %s.%s must be a number, not \"%s\"", where, section, k, v), 0) end
      if math.type(def) == "integer" and math.type(n) == "float" and n == math.floor(n) then n = math.tointeger(n) end
      out[k] = n
    elseif type(def) == "boolean" then
      if v == "on" or v == "true" or v == "yes" then out[k] = true
      elseif v == "off" or v == "false" or v == "no" then out[k] = false
      else error(format("%s: %s.%s must be on or off, not \"%s\"", where, section, k, v), 0) end
    elseif type(def) == "table" then
      local list = {}
      for item in v:gmatch("[^,%s]+") do list[#list + 1] = item end
      out[k] = list
    else
      out[k] = v
    end
  end
  return read_only(out, "spacer.config." .. section)
end

local config_view = { declare = declare }
for section, values in pairs(conf_values) do
  config_view[section] = read_only(values, "spacer.config." .. section)
end
spacer.config = read_only(config_view, "spacer.config")

-- Loading -------------------------------------------------------------------

local loading, on_loaded = true, {}

-- spacer.on_loaded(fn): fn() runs once init.lua has returned, every route declared (the
-- OpenAPI document is built then). An error in fn fails the load like any other.
function spacer.on_loaded(fn)
  if type(fn) ~= "function" then error("spacer.on_loaded: expects a function", 2) end
  if not loading then error("spacer.on_loaded: the generation has loaded already", 2) end
  on_loaded[#on_loaded + 1] = fn
end

-- spacer.files.read(path[, max_bytes]) -> content | nil, err, and spacer.files.static(path[,
-- max_bytes]) -> file | nil, err (the process's shared copy, a body sent without a copy): a
-- read blocks the event loop, so they are for a generation's load (assets kept in memory),
-- never for a request.
if spacer.files then -- a host without the file opener (fuzzing) has none
  local read, static = spacer.files.read, spacer.files.static
  spacer.files.read = function(path, max_bytes)
    if not loading then
      error("spacer.files.read: only while a generation loads (a read blocks the loop)", 2)
    end
    return read(path, max_bytes)
  end
  spacer.files.static = function(path, max_bytes)
    if not loading then
      error("spacer.files.static: only while a generation loads (a read blocks the loop)", 2)
    end
    return static(path, max_bytes)
  end
end

-- Called by the core after init.lua: every application section must have been declared.
core.set_finisher(function()
  for _, fn in ipairs(on_loaded) do fn() end
  loading = false
  for section, keys in pairs(conf_lines) do
    if not core.is_core_section(section) and not declared[section] then
      local line = math.huge
      for _, l in pairs(keys) do if l < line then line = l end end
      if line == math.huge then line = 0 end
      return format("%s:%d: unknown section [%s] (no script declares it)", core.conf_path, line, section)
    end
  end
  return nil
end)

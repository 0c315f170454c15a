-- lib/payments.lua: the payment provider plugins of this generation. Loads the plugins that
-- spacer.conf's [payments] enables from plugins/payments/<name>.lua, checks each at load (its
-- functions, its [payments.<name>] settings) and answers which provider takes a
-- payment_method. A load error names the file; the generation is then refused and the old
-- one keeps serving. docs/plugins.md is the plugin author's guide.
--
-- Settings: declares [payments] and every [payments.<name>] section (this is the only place
-- that does).
--
--   [payments]
--   enabled = manual, stripe         the providers to load (plugins/payments/<name>.lua)
--   credit_card = stripe             any other key: an alias, method -> enabled provider
--   public_url = https://api.example.com   what providers call back (webhooks)
--   job_interval = 30                seconds between runs of the background jobs
--
-- Without a [payments] section at all, `manual` is enabled and the web app's credit_card,
-- paypal and mpesa are aliases of it (the shipped development configuration).
--
--   payments.SETTINGS                the [payments] settings
--   payments.providers               name -> { plugin, ctx, name, pending_timeout }
--   payments.provider(name) -> provider | nil       an enabled provider by its name
--   payments.resolve(method) -> provider | nil      the provider of a payment_method
--   payments.methods() -> { "credit_card", ... }    every method accepted, sorted
--   payments.webhook_url(name[, query]) -> the URL a provider calls back
--   payments.check_plugin(plugin, where) -> nil | message    the interface check (tests)
local _M = {}

local format = string.format

local PLUGIN_DIR = "plugins/payments/"

-- What a plugin sees of Spacer (docs/plugins.md "ctx"): its settings and the codecs and I/O
-- it needs. Nothing of the application: no database, no routes, no other plugin.
local function make_ctx(name, config)
  return {
    name = name,
    config = config,
    http = rawget(spacer, "http"),
    crypto = spacer.crypto,
    log = spacer.log,
    json = spacer.json,
    time = spacer.time,
  }
end

-- [payments] -------------------------------------------------------------------------------

local BASE = {
  enabled = { "manual" },
  public_url = "",
  job_interval = 30,
}

local DEV_ALIASES = { credit_card = "manual", paypal = "manual", mpesa = "manual" }

local given = spacer.config.payments
local defaults = {}
for k, v in pairs(BASE) do
  defaults[k] = v
end
if given == nil then
  for k, v in pairs(DEV_ALIASES) do
    defaults[k] = v
  end
else
  for k in pairs(given) do
    if defaults[k] == nil then
      defaults[k] = "" -- an alias: any key may name one
    end
  end
end

local SETTINGS = spacer.config.declare("payments", defaults)
_M.SETTINGS = SETTINGS

local function conf_error(message)
  error("spacer.conf [payments]: " .. message, 0)
end

if SETTINGS.job_interval < 1 then
  conf_error("job_interval must be at least 1 second")
end
if SETTINGS.public_url ~= "" and not SETTINGS.public_url:match("^https?://[^/]+") then
  conf_error("public_url must be an http:// or https:// URL")
end

-- Plugins ----------------------------------------------------------------------------------

local TYPES = { string = "string", number = "number", integer = "number", boolean = "boolean" }

-- payments.check_plugin(plugin, where) -> nil | the first problem, as "where: problem".
function _M.check_plugin(plugin, where)
  local function bad(message)
    return format("%s: %s", where, message)
  end
  if type(plugin) ~= "table" then
    return bad("must return a table (the plugin), not " .. type(plugin))
  end
  if type(plugin.name) ~= "string" or not plugin.name:match("^[a-z][a-z0-9_]*$") then
    return bad("name must be a lower-case word")
  end
  if type(plugin.methods) ~= "table" then
    return bad("methods must be a list of payment_method names")
  end
  for i, m in ipairs(plugin.methods) do
    if type(m) ~= "string" or not m:match("^[a-z][a-z0-9_]*$") then
      return bad(format("methods[%d] must be a lower-case word", i))
    end
  end
  if type(plugin.config) ~= "table" then
    return bad("config must be a table (the schema of its [payments.<name>] section)")
  end
  for key, rule in pairs(plugin.config) do
    if type(key) ~= "string" or type(rule) ~= "table" or not TYPES[rule.type] then
      return bad(format("config.%s must be { type = string|number|integer|boolean, ... }",
        tostring(key)))
    end
    if rule.default ~= nil and type(rule.default) ~= TYPES[rule.type] then
      return bad(format("config.%s: default is not a %s", key, rule.type))
    end
    if rule.check ~= nil and type(rule.check) ~= "function" then
      return bad(format("config.%s: check must be a function", key))
    end
  end
  for _, fn in ipairs({ "create", "webhook" }) do
    if type(plugin[fn]) ~= "function" then
      return bad(format("missing function %s(ctx, ...)", fn))
    end
  end
  for _, fn in ipairs({ "refund", "status", "validate" }) do
    if plugin[fn] ~= nil and type(plugin[fn]) ~= "function" then
      return bad(format("%s must be a function", fn))
    end
  end
  if plugin.pending_timeout ~= nil and math.type(plugin.pending_timeout) ~= "integer" then
    return bad("pending_timeout must be a whole number of seconds")
  end
  return nil
end

-- The [payments.<name>] section: the file's values over the schema's defaults, checked.
local function plugin_config(plugin, where)
  local section = "payments." .. plugin.name
  local defaults = { pending_timeout = plugin.pending_timeout or 0 }
  for key, rule in pairs(plugin.config) do
    local d = rule.default
    if d == nil then
      d = ({ string = "", number = 0, integer = 0, boolean = false })[rule.type]
    end
    defaults[key] = d
  end
  local config = spacer.config.declare(section, defaults)
  local function bad(key, message)
    error(format("spacer.conf [%s] %s %s (%s)", section, key, message, where), 0)
  end
  for key, rule in pairs(plugin.config) do
    local v = config[key]
    if rule.required and (v == "" or v == nil) then
      bad(key, "is required")
    end
    if rule.type == "integer" and math.type(v) ~= "integer" then
      bad(key, "must be a whole number")
    end
    if rule.check and v ~= "" then
      local problem = rule.check(v)
      if problem then
        bad(key, problem)
      end
    end
  end
  if config.pending_timeout < 0 then
    bad("pending_timeout", "must be 0 (never) or more seconds")
  end
  return config
end

local function load_plugin(name)
  local where = PLUGIN_DIR .. name .. ".lua"
  if not name:match("^[a-z][a-z0-9_]*$") then
    conf_error(format("enabled: \"%s\" is not a plugin name", name))
  end
  local ok, plugin = pcall(require, "plugins.payments." .. name)
  if not ok then
    error(format("%s: %s", where, tostring(plugin)), 0)
  end
  local problem = _M.check_plugin(plugin, where)
  if problem then
    error(problem, 0)
  end
  if plugin.name ~= name then
    error(format("%s: name is \"%s\", the file says \"%s\"", where, plugin.name, name), 0)
  end
  local config = plugin_config(plugin, where)
  return {
    name = name,
    plugin = plugin,
    ctx = make_ctx(name, config),
    pending_timeout = config.pending_timeout,
    where = where,
  }
end

local providers, methods = {}, {}
_M.providers = providers

for _, name in ipairs(SETTINGS.enabled) do
  if providers[name] then
    conf_error(format("enabled lists \"%s\" twice", name))
  end
  providers[name] = load_plugin(name)
end

-- A section of a provider that is not enabled is still checked, so a typo is found at load
-- and not when the provider is switched on.
for section in pairs(spacer.config) do
  local name = type(section) == "string" and section:match("^payments%.(.+)$")
  if name and not providers[name] then
    load_plugin(name)
  end
end

-- Methods: each plugin's own names, then the aliases (which win).
for name, p in pairs(providers) do
  for _, m in ipairs(p.plugin.methods) do
    if methods[m] and methods[m] ~= p then
      conf_error(format("method \"%s\" is claimed by both %s and %s; set %s = <provider>",
        m, methods[m].name, name, m))
    end
    methods[m] = p
  end
end
for key, target in pairs(SETTINGS) do
  if BASE[key] == nil then
    if type(target) ~= "string" or target == "" then
      conf_error(format("%s must name an enabled provider", key))
    end
    if not providers[target] then
      conf_error(format("%s = %s, but %s is not enabled (enabled: %s)", key, target, target,
        table.concat(SETTINGS.enabled, ", ")))
    end
    methods[key] = providers[target]
  end
end
for name, p in pairs(providers) do
  if methods[name] == nil then
    methods[name] = p
  end
end

function _M.provider(name)
  return providers[name]
end

function _M.resolve(method)
  if type(method) ~= "string" then
    return nil
  end
  return methods[method:lower()]
end

function _M.methods()
  local list = {}
  for m in pairs(methods) do
    list[#list + 1] = m
  end
  table.sort(list)
  return list
end

-- The base URL providers call: [payments] public_url, else this server's own address.
function _M.base_url()
  if SETTINGS.public_url ~= "" then
    return (SETTINGS.public_url:gsub("/+$", ""))
  end
  local server = spacer.config.server or {}
  return format("http://%s:%s", server.host or "127.0.0.1", server.port or "5000")
end

function _M.webhook_url(name, query)
  local url = _M.base_url() .. "/api/payments/webhooks/" .. name
  if query then
    url = url .. "?" .. query
  end
  return url
end

return _M

-- lib/openapi.lua: what the OpenAPI document (routes/docs.lua) reads besides the route table:
-- lib/schema.lua rules as JSON Schema (so a parameter is documented by the very rule that
-- validates it), and the shapes of the answers, as named component schemas the route files
-- declare next to the functions that build those answers.
--
--   openapi.component(name, schema) -> { ["$ref"] = "#/components/schemas/<name>" }
--     Registers a schema under components.schemas (once per generation; a second, different
--     registration of a name is an error at load).
--
--   openapi.ref(name) -> the $ref of a registered (or soon registered) component
--
--   openapi.components() -> name -> schema, every registered component
--
--   openapi.object(properties[, required]) -> { type = "object", properties, required }
--   openapi.array(items) -> { type = "array", items }
--   openapi.STRING, INTEGER, NUMBER, BOOLEAN, DATETIME, AMOUNT, CURRENCY, TEXT_OR_NULL,
--   openapi.MESSAGE -> small schemas to write shapes with (AMOUNT: a decimal amount in the
--     currency's major unit; TEXT_OR_NULL: a nullable string)
--   openapi.nullable(schema) -> a copy with nullable = true
--
--   openapi.rule(rule) -> the JSON Schema of one lib/schema.lua rule (type, format, bounds,
--     lengths, enum, default, nullable, readOnly)
--   openapi.body(spec) -> the object schema of a body spec (readonly fields shown readOnly,
--     required ones listed)
--   openapi.parameters(spec, where) -> the OpenAPI parameters ("query", "header") of a spec,
--     sorted by name, with their schemas, required flags and defaults
--
-- Route options the document reads (beside spacer.route's auth, roles, body, partial,
-- summary, description, tags):
--   query       a lib/schema.lua spec of the query parameters: the same table the handler
--               validates with api.query or api.list_params
--   headers     a lib/schema.lua spec of request headers the route reads (Idempotency-Key)
--   paged       true for a list: page and per_page (api.PAGE_QUERY), and the X-Total-Count
--               and Link headers of the 200
--   result      the schema (usually a $ref) of the 2xx body; of each item when paged
--   status      the success status (default 200; 201 for a creation)
--   responses   status -> "description" or { description =, schema = }: what else a route
--               answers (404, 409, 429, ...); 4xx and 5xx get the Error schema unless given
local json = spacer.json

local _M = {}

local components = {}

local function ref_of(name)
  return { ["$ref"] = "#/components/schemas/" .. name }
end

function _M.component(name, schema)
  if components[name] and components[name] ~= schema then
    error("openapi.component: \"" .. name .. "\" is registered twice", 2)
  end
  components[name] = schema
  return ref_of(name)
end

_M.ref = ref_of

function _M.components()
  return components
end

-- Shapes ------------------------------------------------------------------------------------

function _M.object(properties, required)
  local s = { type = "object", properties = properties }
  if required and #required > 0 then
    s.required = json.array(required)
  end
  return s
end

function _M.array(items)
  return { type = "array", items = items }
end

function _M.nullable(schema)
  local copy = {}
  for k, v in pairs(schema) do
    copy[k] = v
  end
  copy.nullable = true
  return copy
end

_M.STRING = { type = "string" }
_M.INTEGER = { type = "integer" }
_M.ID = { type = "integer", minimum = 1 }
_M.NUMBER = { type = "number" }
_M.BOOLEAN = { type = "boolean" }
_M.DATETIME = { type = "string", format = "date-time" }
_M.AMOUNT = { type = "number", description = "decimal amount in the currency's major unit" }
_M.CURRENCY = { type = "string", minLength = 3, maxLength = 3, example = "KES" }
_M.TEXT_OR_NULL = { type = "string", nullable = true }
_M.MESSAGE = { type = "string", description = "a human-readable confirmation" }

-- lib/schema.lua rules -------------------------------------------------------------------

local function rule_schema(rule)
  local t = rule.type
  local s = {}
  if t == "string" or t == "email" or t == "datetime" then
    s.type = "string"
    if t == "email" then s.format = "email" end
    if t == "datetime" then -- wider than RFC 3339's date-time: no format, an example
      s.description = "ISO 8601 date and time; without an offset, read in the space's zone"
      s.example = "2026-12-01T10:00"
    end
    s.minLength, s.maxLength = rule.min_length, rule.max_length
    if rule.required and not s.minLength and t == "string" then s.minLength = 1 end
  elseif t == "integer" then
    s.type, s.minimum, s.maximum = "integer", rule.min, rule.max
  elseif t == "number" then
    s.type, s.minimum, s.maximum = "number", rule.min, rule.max
  elseif t == "money" then
    s.type = "number"
    s.description = "decimal amount in the currency's major unit"
    if rule.min == 0 then s.minimum = 0 end
  elseif t == "boolean" then
    s.type = "boolean"
  elseif t == "array" then
    s.type = "array"
    s.items = rule.items and rule_schema(rule.items) or {}
    s.minItems, s.maxItems = rule.min_length, rule.max_length
    if rule.split then
      s.description = "also accepted: one string of items separated by \"" .. rule.split .. "\""
    end
  end
  if rule.enum then
    s.enum = json.array({ table.unpack(rule.enum) })
  end
  if rule.default ~= nil and type(rule.default) ~= "table" then
    s.default = rule.default
  end
  if rule.readonly then s.readOnly = true end
  if rule.nullable then s.nullable = true end
  if rule.description then s.description = rule.description end
  return s
end

_M.rule = rule_schema

local function sorted_names(spec)
  local names = {}
  for name in pairs(spec) do
    names[#names + 1] = name
  end
  table.sort(names)
  return names
end

function _M.body(spec)
  local props, required = {}, {}
  for _, name in ipairs(sorted_names(spec)) do
    local rule = spec[name]
    props[name] = rule_schema(rule)
    if rule.required and not rule.readonly then
      required[#required + 1] = name
    end
  end
  return _M.object(props, required)
end

function _M.parameters(spec, where)
  local out = {}
  for _, name in ipairs(sorted_names(spec)) do
    local rule = spec[name]
    local schema = rule_schema(rule)
    local p = {
      name = name,
      ["in"] = where or "query",
      required = rule.required and true or false,
      description = schema.description, -- shown beside the field in Swagger UI
      schema = schema,
    }
    schema.description = nil
    if rule.type == "array" then
      p.style, p.explode = "form", false
    end
    out[#out + 1] = p
  end
  return out
end

return _M

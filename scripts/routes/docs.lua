-- routes/docs.lua: the OpenAPI 3 document, made from the route declarations themselves
-- (methods, paths, auth, roles, body schemas, summaries), and Swagger UI to read it.
local ops = spacer.ops
local json = spacer.json

local _M = {}

local SWAGGER_UI_VERSION = "5.17.14"

-- One rule of lib/schema.lua as a JSON Schema.
local function json_schema(rule)
  local t = rule.type
  local s = {}
  if t == "string" or t == "email" or t == "datetime" then
    s.type = "string"
    if t == "email" then s.format = "email" end
    if t == "datetime" then s.format = "date-time" end
    s.minLength, s.maxLength = rule.min_length, rule.max_length
    if rule.enum then s.enum = json.array(rule.enum) end
  elseif t == "integer" then
    s.type, s.minimum, s.maximum = "integer", rule.min, rule.max
  elseif t == "number" or t == "money" then
    s.type, s.minimum, s.maximum = "number", rule.min, rule.max
  elseif t == "boolean" then
    s.type = "boolean"
  elseif t == "array" then
    s.type = "array"
    s.items = rule.items and json_schema(rule.items) or {}
    s.minItems, s.maxItems = rule.min_length, rule.max_length
  end
  if rule.readonly then s.readOnly = true end
  if rule.nullable then s.nullable = true end
  if rule.description then s.description = rule.description end
  return s
end

local function body_schema(spec)
  local props, required = {}, {}
  for name, rule in pairs(spec) do
    props[name] = json_schema(rule)
    if rule.required and not rule.readonly then required[#required + 1] = name end
  end
  table.sort(required)
  local s = { type = "object", properties = props }
  if #required > 0 then s.required = required end
  return s
end

local ERROR_REF = { ["$ref"] = "#/components/schemas/Error" }

local function error_response(text)
  return { description = text, content = { ["application/json"] = { schema = ERROR_REF } } }
end

local function operation(route)
  local opts = route.opts
  local path_params = json.array()
  local oa_path = route.path:gsub("{([%w_]+):str}", function(name)
    path_params[#path_params + 1] = { name = name, ["in"] = "path", required = true,
      schema = { type = "string" } }
    return "{" .. name .. "}"
  end)
  for name in route.path:gmatch("{([%w_]+)}") do
    path_params[#path_params + 1] = { name = name, ["in"] = "path", required = true,
      schema = { type = "integer", minimum = 1 } }
  end
  local op = {
    summary = opts.summary,
    description = opts.description,
    tags = json.array(opts.tags or { "misc" }),
    parameters = path_params,
    responses = { ["200"] = { description = "success" } },
    ["x-declared-at"] = route.source,
  }
  if route.compat then
    op.deprecated = true
    op.tags = json.array({ "compatibility" })
    op.description = "Compatibility path of the Spacer web app; same handler as the canonical path."
  end
  if route.auth then
    op.security = json.array({ { bearerAuth = json.array() } })
    op.responses["401"] = error_response("missing, expired or forged token")
    if #route.roles > 0 then
      op.responses["403"] = error_response("requires the role " .. table.concat(route.roles, " or "))
      op.description = (op.description and op.description .. " " or "")
        .. "Roles: " .. table.concat(route.roles, ", ") .. "."
    end
  end
  if opts.body then
    op.requestBody = {
      required = not opts.partial,
      content = { ["application/json"] = { schema = body_schema(opts.body) } },
    }
    op.responses["400"] = error_response("the body is not a JSON object")
    op.responses["422"] = error_response("a field failed validation (see fields)")
  end
  for status, text in pairs(opts.responses or {}) do
    op.responses[tostring(status)] = status >= 400 and error_response(text) or { description = text }
  end
  return oa_path, op
end

local cached -- per generation: a reload builds a new document

function _M.document()
  if cached then return cached end
  local paths = {}
  for _, route in ipairs(ops.routes()) do
    local oa_path, op = operation(route)
    paths[oa_path] = paths[oa_path] or {}
    paths[oa_path][route.method:lower()] = op
  end
  cached = json.encode({
    openapi = "3.0.3",
    info = {
      title = "Spacer API",
      version = spacer.version,
      description = "Event-space booking: accounts, spaces, bookings, payments, invoices.",
    },
    servers = json.array({ { url = "/" } }),
    paths = paths,
    components = {
      securitySchemes = { bearerAuth = { type = "http", scheme = "bearer", bearerFormat = "JWT" } },
      schemas = {
        Error = {
          type = "object",
          required = json.array({ "error", "code" }),
          properties = {
            error = { type = "string" },
            code = { type = "string" },
            fields = { type = "object", additionalProperties = { type = "string" } },
          },
        },
      },
    },
  })
  return cached
end

local PAGE = [[<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Spacer API</title>
  <link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@%s/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@%s/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({ url: "/apispec.json", dom_id: "#swagger-ui" });
  </script>
</body>
</html>
]]

spacer.get("/apispec.json", { summary = "The OpenAPI 3 document", tags = { "docs" } }, function()
  return 200, _M.document(), { ["Content-Type"] = "application/json; charset=utf-8" }
end)

spacer.get("/apidocs", { summary = "Swagger UI", tags = { "docs" } }, function()
  return 200, PAGE:format(SWAGGER_UI_VERSION, SWAGGER_UI_VERSION),
    { ["Content-Type"] = "text/html; charset=utf-8" }
end)

return _M

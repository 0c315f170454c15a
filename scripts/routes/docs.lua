-- routes/docs.lua: the OpenAPI 3 document, made from the route declarations themselves on its
-- first request in a generation (so a reload costs no build when nobody reads it): methods, paths, path and query parameters with
-- the very rules that validate them, bodies, answers and their errors, auth and roles; and
-- Swagger UI to read it, served from memory (lib/static.lua: the process's one copy, shared by
-- generations) out of the npm package swagger-ui-dist that `make deps` installs ([docs]
-- swagger_ui_dir): no other host involved.
local api = require("lib.api")
local openapi = require("lib.openapi")
local static = require("lib.static")

local ops = spacer.ops
local json = spacer.json

local _M = {}

local SETTINGS = spacer.config.declare("docs", {
  swagger_ui_dir = "web/node_modules/swagger-ui-dist",
})

-- The files of swagger-ui-dist that the page uses; nothing else is ever answered.
local UI_FILES = {
  "swagger-ui.css",
  "index.css",
  "swagger-ui-bundle.js",
  "swagger-ui-standalone-preset.js",
  "favicon-32x32.png",
  "favicon-16x16.png",
}

-- The page is ours: assets by absolute path (it answers /apidocs and /apidocs/), versioned so
-- a new swagger-ui-dist is never mixed with a cached old one, and no inline script, so the
-- Content-Security-Policy can forbid every other origin.
local PAGE = [[<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Spacer API</title>
  <link rel="stylesheet" href="/apidocs/swagger-ui.css?v=%s">
  <link rel="stylesheet" href="/apidocs/index.css?v=%s">
  <link rel="icon" type="image/png" href="/apidocs/favicon-32x32.png?v=%s" sizes="32x32">
  <link rel="icon" type="image/png" href="/apidocs/favicon-16x16.png?v=%s" sizes="16x16">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/apidocs/swagger-ui-bundle.js?v=%s"></script>
  <script src="/apidocs/swagger-ui-standalone-preset.js?v=%s"></script>
  <script src="/apidocs/swagger-initializer.js?v=%s"></script>
</body>
</html>
]]

local INITIALIZER = [[window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/apispec.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    plugins: [SwaggerUIBundle.plugins.DownloadUrl],
    layout: "StandaloneLayout",
    validatorUrl: null,
    persistAuthorization: true,
    operationsSorter: "alpha",
    displayRequestDuration: true
  });
});
]]

local PAGE_POLICY = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
  .. "img-src 'self' data:; connect-src 'self'; font-src 'self' data:; base-uri 'none'; "
  .. "form-action 'none'; frame-ancestors 'none'"
local PAGE_CACHE = "no-cache"                 -- revalidated each time (ETag): 304 when unchanged
local ASSET_CACHE = "public, max-age=86400"   -- the page links them with ?v=<version>

-- The OpenAPI document ---------------------------------------------------------------------

local ERROR = openapi.component("Error", openapi.object({
  error = { type = "string", description = "a human-readable message" },
  code = { type = "string", description = "a stable snake_case code (validation_failed, ...)" },
  message = { type = "string", description = "the same text as error (compatibility paths)" },
  fields = {
    type = "object",
    additionalProperties = { type = "string" },
    description = "validation errors: field or parameter -> what is wrong",
  },
  request_id = { type = "string", description = "on 500: the X-Request-Id to report" },
}, { "error", "code" }))

local TAG_TEXT = {
  users = "Accounts: registration, login (a bearer token), profiles; admins manage users.",
  spaces = "Event spaces: the public search, owners' listings, availability and quotes.",
  bookings = "Booking requests and their approval flow.",
  payments = "Payments through provider plugins, and the providers' webhooks.",
  invoices = "Invoices of bookings: JSON, or a printable HTML page.",
  admin = "Operators: reload the scripts, see every worker's state.",
  ops = "Health, readiness and metrics.",
  docs = "This document and Swagger UI.",
  compatibility = "The un-prefixed paths of the existing Spacer web app: the same handlers as "
    .. "the canonical paths, with the old bodies (lists unpaged unless page or per_page is "
    .. "given, amenities as one comma-separated string, read-only body fields ignored, "
    .. "errors with message as well as error). New clients use the canonical paths.",
}
local TAG_ORDER = { "users", "spaces", "bookings", "payments", "invoices", "admin", "ops", "docs",
  "compatibility" }

local function error_response(text)
  return { description = text, content = { ["application/json"] = { schema = ERROR } } }
end

local LIST_HEADERS = {
  ["X-Total-Count"] = {
    description = "every matching item, across all pages",
    schema = { type = "integer", minimum = 0 },
  },
  ["Link"] = {
    description = "RFC 8288 links to the first, prev, next and last pages (paged lists)",
    schema = { type = "string" },
  },
}

-- Conditional GET: a route with etag (or cache, which implies it) answers its 200 with an
-- ETag, and a 304 without a body when If-None-Match names that tag; so do the files of this
-- document and Swagger UI, which declare their 304 themselves (lib/static.lua).
local IF_NONE_MATCH = {
  name = "If-None-Match",
  ["in"] = "header",
  required = false,
  description = "the ETag of an answer the client holds (or a list of them, or *): when it "
    .. "still matches, the answer is a 304 without a body",
  schema = { type = "string" },
  example = '"0123456789abcdef0123456789abcdef"',
}
local ETAG_HEADER = {
  description = "the entity tag of this answer (its body and headers): give it back in "
    .. "If-None-Match to get a 304 while nothing changed",
  schema = { type = "string" },
}
local NOT_MODIFIED = "unchanged since the ETag given in If-None-Match: no body, the same ETag"

local function conditional(route)
  local opts = route.opts
  return route.method == "GET" and (opts.etag or (opts.responses or {})[304] ~= nil) and true
    or false
end

local function operation_id(method, path)
  local id = method:lower() .. path:gsub("[{}]", ""):gsub("[^%w]+", "_")
  return (id:gsub("_+$", ""))
end

-- "{id}" and "{provider:str}" become OpenAPI path parameters.
local function path_parameters(route)
  local params = {}
  local oa_path = route.path:gsub("{([%w_]+)(:?%a*)}", function(name, kind)
    local schema = { type = "integer", minimum = 1 }
    if kind == ":str" then
      schema = { type = "string" }
    end
    params[#params + 1] = { name = name, ["in"] = "path", required = true, schema = schema }
    return "{" .. name .. "}"
  end)
  return oa_path, params
end

local function json_content(schema)
  return { ["application/json"] = { schema = schema } }
end

-- responses[status] of a route: "text" or { description =, schema = }.
local function declared_response(status, given)
  local text = type(given) == "table" and given.description or given
  local schema = type(given) == "table" and given.schema or nil
  if status >= 400 and not schema then
    return error_response(text)
  end
  local r = { description = text }
  if schema then
    r.content = json_content(schema)
  end
  return r
end

local function operation(route)
  local opts = route.opts
  local oa_path, params = path_parameters(route)
  local responses = {}
  local success = opts.status or 200

  for _, p in ipairs(openapi.parameters(opts.query or {}, "query")) do
    params[#params + 1] = p
  end
  if opts.paged then
    for _, p in ipairs(openapi.parameters(api.PAGE_QUERY, "query")) do
      params[#params + 1] = p
    end
  end
  for _, p in ipairs(openapi.parameters(opts.headers or {}, "header")) do
    params[#params + 1] = p
  end

  local ok = { description = "success" }
  if opts.result then
    ok.content = json_content(opts.paged and openapi.array(opts.result) or opts.result)
  end
  if opts.paged then
    ok.description = "a page of the list (a JSON array)"
    ok.headers = LIST_HEADERS
  end
  local etag = conditional(route)
  if etag then
    params[#params + 1] = IF_NONE_MATCH
    local headers = { ETag = ETAG_HEADER }
    for name, h in pairs(ok.headers or {}) do
      headers[name] = h
    end
    ok.headers = headers
    responses["304"] = { description = NOT_MODIFIED, headers = { ETag = ETAG_HEADER } }
  end
  if opts.content then -- another media type: { ["text/plain"] = { schema = ... } }
    ok.content = opts.content
  end
  responses[tostring(success)] = ok

  if route.auth then
    responses["401"] = error_response("missing, malformed, expired or forged token")
    if #route.roles > 0 then
      responses["403"] = error_response("requires the role " .. table.concat(route.roles, " or "))
    end
  end
  if opts.body then
    responses["400"] = error_response("the body is not valid JSON, or not an object")
    responses["413"] = error_response("the body is larger than the configured limit")
    responses["415"] = error_response("a non-empty body that is not application/json")
  end
  if opts.body or opts.query or opts.paged then
    responses["422"] = error_response("a field or parameter failed validation (see fields)")
  end
  if #params > 0 and route.path:find("{", 1, true) then
    responses["404"] = error_response("no such resource, or not yours to see")
  end
  for status, given in pairs(opts.responses or {}) do
    if status == success then
      local r = declared_response(status, given)
      ok.description = r.description or ok.description
      ok.content = r.content or ok.content
    else
      local r, auto = declared_response(status, given), responses[tostring(status)]
      if auto and (status == 401 or status == 403) then
        r.description = auto.description .. "; or " .. r.description
      elseif auto and status == 304 then
        r.headers = auto.headers
      end
      responses[tostring(status)] = r
    end
  end
  responses["500"] = { ["$ref"] = "#/components/responses/ScriptError" }
  if opts.db ~= false and not responses["503"] then
    responses["503"] = { ["$ref"] = "#/components/responses/Unavailable" }
  end

  local description = opts.description
  if route.auth and #route.roles > 0 then
    description = (description and description .. "\n\n" or "")
      .. "Roles: " .. table.concat(route.roles, ", ") .. "."
  end
  local op = {
    operationId = operation_id(route.method, oa_path),
    summary = opts.summary,
    description = description,
    tags = json.array({ table.unpack(opts.tags or { "ops" }) }),
    parameters = json.array(params),
    responses = responses,
    ["x-declared-at"] = route.source,
  }
  if route.compat then
    op.deprecated = true
    op.tags = json.array({ "compatibility" })
    op.description = "Compatibility path of the Spacer web app; the same handler as the "
      .. "canonical path, with the old bodies (see the tag)."
      .. (description and "\n\n" .. description or "")
  end
  if route.auth then
    op.security = json.array({ { bearerAuth = json.array() } })
  end
  if opts.body then
    op.requestBody = {
      required = false, -- an empty body counts as {} (API.md)
      content = json_content(openapi.body(opts.body)),
    }
    if opts.partial then
      op.requestBody.description = "Only the fields to change."
    end
  end
  return oa_path, op
end

local function build()
  local paths, used = {}, {}
  for _, route in ipairs(ops.routes()) do
    local oa_path, op = operation(route)
    paths[oa_path] = paths[oa_path] or {}
    paths[oa_path][route.method:lower()] = op
    for _, tag in ipairs(op.tags) do
      used[tag] = true
    end
  end
  local tags = {}
  for _, name in ipairs(TAG_ORDER) do
    if used[name] then
      tags[#tags + 1] = { name = name, description = TAG_TEXT[name] }
      used[name] = nil
    end
  end
  local others = {}
  for name in pairs(used) do
    others[#others + 1] = name
  end
  table.sort(others)
  for _, name in ipairs(others) do
    tags[#tags + 1] = { name = name }
  end
  return json.encode({
    openapi = "3.0.3",
    info = {
      title = "Spacer API",
      version = spacer.version,
      description = "Event-space booking: accounts, spaces, bookings, payments, invoices.\n\n"
        .. "Log in with `POST /api/users/login`, then give the token to **Authorize** "
        .. "(bearer). Lists answer a JSON array; `page` and `per_page` page them, and the "
        .. "`X-Total-Count` and `Link` headers carry the totals. Every error is "
        .. "`{\"error\", \"code\"}` (with `fields` on validation errors). Money is shown in "
        .. "the currency's major unit; times are ISO 8601 with the space's offset.",
    },
    servers = json.array({ { url = "/" } }),
    tags = json.array(tags),
    paths = paths,
    components = {
      securitySchemes = {
        bearerAuth = {
          type = "http",
          scheme = "bearer",
          bearerFormat = "JWT",
          description = "The token of POST /api/users/login.",
        },
      },
      schemas = openapi.components(),
      responses = {
        ScriptError = error_response("a script error; the body has the request_id"),
        Unavailable = {
          description = "the database is unavailable, or the pool's queue is full",
          headers = { ["Retry-After"] = { schema = { type = "integer" } } },
          content = json_content(ERROR),
        },
      },
    },
  })
end

-- Files answered from memory -----------------------------------------------------------

local files = static.new()   -- the document
local ui = static.new()      -- Swagger UI: swagger-ui-dist's files, our page and initializer
local ui_missing              -- why Swagger UI is not there, when it is not

local function load_ui()
  local dir = SETTINGS.swagger_ui_dir
  local package = spacer.files.read(dir .. "/package.json")
  local ok, err = static.load(ui, dir, UI_FILES)
  if not (package and ok) then
    ui_missing = "Swagger UI is not installed (" .. (err or (dir .. "/package.json missing"))
      .. "): run make deps, or set [docs] swagger_ui_dir"
    spacer.log.warn(ui_missing)
    return
  end
  local decoded = json.decode(package)
  local version = type(decoded) == "table" and tostring(decoded.version) or "0"
  version = version:gsub("[^%w%.%-]", "")
  static.add(ui, "index.html", PAGE:format(version, version, version, version, version,
    version, version))
  static.add(ui, "swagger-initializer.js", INITIALIZER)
end

load_ui()

-- The route table does not change within a generation: built once, on first use.
local function document_set()
  if not files.files["apispec.json"] then
    static.add(files, "apispec.json", build(), "application/json; charset=utf-8")
  end
  return files
end

-- Where no request follows (`spacer check`, the master's load at start-up: no worker), it is
-- built at load, so a declaration the document cannot take stops there with its file:line.
if spacer.worker.index < 0 then
  spacer.on_loaded(document_set)
end

function _M.document()
  return document_set().files["apispec.json"].body
end

local function page_answer(req, name, cache)
  if ui_missing then
    spacer.error(503, ui_missing, "docs_unavailable")
  end
  local status, body, headers = static.answer(req, ui, name, cache)
  if name == "index.html" then
    headers["Content-Security-Policy"] = PAGE_POLICY
  end
  return status, body, headers
end

local NO_DB = false
local TAGS = { "docs" }
local HTML = { ["text/html"] = { schema = { type = "string" } } }

spacer.get("/apispec.json", {
  summary = "This OpenAPI 3 document",
  tags = TAGS,
  db = NO_DB,
  result = { type = "object" },
  responses = { [304] = "unchanged since the ETag given in If-None-Match" },
}, function(req)
  return static.answer(req, document_set(), "apispec.json", PAGE_CACHE)
end)

spacer.get("/apidocs", {
  summary = "Swagger UI (this document, with Authorize and Try it out)",
  tags = TAGS,
  db = NO_DB,
  content = HTML,
  responses = { [304] = "unchanged since the ETag given in If-None-Match",
    [503] = "Swagger UI is not installed (make deps)" },
}, function(req)
  return page_answer(req, "index.html", PAGE_CACHE)
end)

spacer.get("/apidocs/{file:str}", {
  summary = "Swagger UI's files (scripts, styles, icons)",
  tags = TAGS,
  db = NO_DB,
  content = { ["*/*"] = { schema = { type = "string", format = "binary" } } },
  responses = { [304] = "unchanged since the ETag given in If-None-Match",
    [404] = "no such file", [503] = "Swagger UI is not installed (make deps)" },
}, function(req)
  local name = req.params.file
  return page_answer(req, name, name == "index.html" and PAGE_CACHE or ASSET_CACHE)
end)

return _M

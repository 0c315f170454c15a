-- lib/static.lua: a few files answered from memory. They are taken while the generation loads
-- (spacer.files.static reads, which blocks, so never in a request), each with its content type
-- and an ETag made from its content; a request names a file of the set or gets a 404, so no
-- path a client sends ever reaches the file system. A file from disk is the process's shared
-- copy: a reload that finds it unchanged (same inode, size and times) neither reads nor copies
-- it again, and the answer's body is written from that copy.
--
--   local set = static.new()
--   local ok, err = static.load(set, dir, { "swagger-ui.css", "swagger-ui-bundle.js" })
--     Takes each name from dir into the set; on the first failure: nil, err (the set keeps
--     what was taken before). A name is a plain file name: no "/" and no leading ".".
--   static.add(set, name, body[, content_type])
--     Adds content made by a script (a generated page). The type defaults from the name's
--     extension.
--   static.answer(req, set, name, cache_control) -> status, body, headers
--     200 with the file, or 304 when If-None-Match holds its ETag (weak comparison, "*"
--     too), or raises a 404 not_found when the set has no such name.
local _M = {}

local TYPES = {
  html = "text/html; charset=utf-8",
  js = "text/javascript; charset=utf-8",
  css = "text/css; charset=utf-8",
  json = "application/json; charset=utf-8",
  png = "image/png",
  svg = "image/svg+xml",
  ico = "image/x-icon",
  txt = "text/plain; charset=utf-8",
}

function _M.new()
  return { files = {} }
end

function _M.content_type(name)
  local ext = name:match("%.([%w]+)$")
  return ext and TYPES[ext:lower()] or "application/octet-stream"
end

function _M.add(set, name, body, content_type)
  set.files[name] = {
    body = body,
    type = content_type or _M.content_type(name),
    etag = '"' .. spacer.crypto.sha256(body):sub(1, 32) .. '"',
  }
end

-- A file of spacer.files.static: its ETag is computed once, by the core, the same way.
local function add_file(set, name, file)
  set.files[name] = { body = file, type = _M.content_type(name), etag = file.etag }
end

function _M.load(set, dir, names)
  for _, name in ipairs(names) do
    if name:find("/", 1, true) or name:sub(1, 1) == "." then
      error("static.load: \"" .. name .. "\" must be a plain file name", 2)
    end
    local file, err = spacer.files.static(dir .. "/" .. name)
    if not file then
      return nil, err
    end
    add_file(set, name, file)
  end
  return true
end

-- Does an If-None-Match value hold this ETag? RFC 9110 13.1.2: weak comparison.
local function matches(header, etag)
  if type(header) ~= "string" then
    return false
  end
  for tag in header:gmatch("[^,]+") do
    tag = tag:match("^%s*(.-)%s*$"):gsub("^W/", "")
    if tag == "*" or tag == etag then
      return true
    end
  end
  return false
end

function _M.answer(req, set, name, cache_control)
  local file = name and set.files[name]
  if not file then
    spacer.error(404, "no such file", "not_found")
  end
  local headers = {
    ["ETag"] = file.etag,
    ["Cache-Control"] = cache_control,
    ["X-Content-Type-Options"] = "nosniff",
  }
  if matches(req.headers and req.headers["if-none-match"], file.etag) then
    return 304, nil, headers
  end
  headers["Content-Type"] = file.type
  return 200, file.body, headers
end

return _M

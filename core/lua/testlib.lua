-- testlib.lua: the small assertion library of `spacer test`, carried inside the binary.
-- A test file calls test(name, fn); fn runs later in its own coroutine with the real
-- spacer API (database included). Returns the globals to install and the collected list.
local tests = {}
local format, rep = string.format, string.rep

local function show(v)
  if type(v) == "string" then return format("%q", v) end
  if type(v) ~= "table" then return tostring(v) end
  local ok, s = pcall(spacer.json.encode, v)
  return ok and s or tostring(v)
end

local function deep_eq(a, b)
  if a == b then return true end
  if type(a) ~= "table" or type(b) ~= "table" then return false end
  for k, v in pairs(a) do
    if not deep_eq(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

local function fail(msg, level)
  error(msg, (level or 1) + 2)
end

local G = {}

function G.test(name, fn)
  if type(name) ~= "string" or type(fn) ~= "function" then
    error("test(name, fn): a name and a function, please", 2)
  end
  tests[#tests + 1] = { name = name, fn = fn, file = G._current_file }
end

function G.assert_eq(expected, actual, msg)
  if not deep_eq(expected, actual) then
    fail(format("%sexpected %s, got %s", msg and (msg .. ": ") or "", show(expected), show(actual)))
  end
end

function G.assert_ne(unexpected, actual, msg)
  if deep_eq(unexpected, actual) then
    fail(format("%sexpected anything but %s", msg and (msg .. ": ") or "", show(actual)))
  end
end

function G.assert_true(v, msg)
  if not v then fail(msg or format("expected a true value, got %s", show(v))) end
end

function G.assert_false(v, msg)
  if v then fail(msg or format("expected a false value, got %s", show(v))) end
end

function G.assert_nil(v, msg)
  if v ~= nil then fail(msg or format("expected nil, got %s", show(v))) end
end

-- assert_error(fn, pattern): fn must raise; the message (or a spacer.error's message, or a
-- database error's message) must match the Lua pattern when one is given. Returns the error.
function G.assert_error(fn, pattern)
  local ok, err = pcall(fn)
  if ok then fail("expected an error, none was raised") end
  if pattern then
    local text = err
    if type(err) == "table" then text = err.message or tostring(err) end
    text = tostring(text)
    if not text:find(pattern) then
      fail(format("error %s does not match %q", show(text), pattern))
    end
  end
  return err
end

G._line = rep("-", 60)

return G, tests

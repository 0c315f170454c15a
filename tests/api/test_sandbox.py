"""The script sandbox: what a script may not do is an error, not a hole; the worker lives."""
from harness import Server, check, eq, error_body, test

ROUTES = r'''
local function try(fn)
  local ok, err = pcall(fn)
  return ok and "allowed" or tostring(err)
end
spacer.get("/test/sandbox", function()
  return 200, {
    os_exit = try(function() os.exit(1) end),
    os_execute = try(function() os.execute("true") end),
    io_popen = try(function() return io.popen("true") end),
    load = try(function() return load("return 1")() end),
    dofile = try(function() return dofile("/etc/passwd") end),
    string_dump = try(function() return string.dump(function() end) end),
    require_outside = try(function() return require("..etc.passwd") end),
    require_abs = try(function() return require("/etc/passwd") end),
    debug = try(function() return debug.getinfo(1) end),
    coroutine = try(function() return coroutine.create(function() end) end),
    new_global = try(function() sneaky = 1 end),
    os_time = try(function() return os.time() end),
  }
end)
'''


@test
def scripts_cannot_escape_the_sandbox():
    s = Server(workers=1, extra_routes=ROUTES).start()
    try:
        r = s.get("/test/sandbox")
        eq(200, r.status)
        j = r.json
        for key in ("os_exit", "os_execute", "io_popen", "load", "dofile", "string_dump",
                    "require_outside", "require_abs", "debug", "coroutine", "new_global"):
            check(j[key] != "allowed", "%s is allowed" % key)
        eq("allowed", j["os_time"])
        check("unknown global" in j["io_popen"], j["io_popen"])
        check("bad module name" in j["require_outside"], j["require_outside"])
        eq(200, s.get("/healthz").status)
    finally:
        s.close()


@test
def a_route_declared_twice_is_a_load_error_naming_both_places():
    s = Server(workers=1, extra_routes='spacer.get("/healthz", function() return 200, {} end)\n')
    try:
        s.start(wait=False)
        code = s.proc.wait(10)
        check(code != 0, "started with a conflicting route")
        check("conflicts with GET /healthz declared at" in s.logs(), s.logs())
        check("routes/ops.lua:" in s.logs() and "test_fixture.lua:1" in s.logs(), s.logs())
    finally:
        s.close()

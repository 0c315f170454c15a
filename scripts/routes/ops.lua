-- routes/ops.lua: what operators and load balancers call: welcome, health, readiness,
-- metrics, and the admin's reload and status.
local openapi = require("lib.openapi")

local ops = spacer.ops
local TEXT = { ["text/plain"] = { schema = { type = "string" } } }
local WORKER = openapi.component("Worker", {
  type = "object",
  description = "one worker process: pid, generation, loaded_at, last_reload_error, pool",
  additionalProperties = true,
})

spacer.get("/", {
  summary = "Welcome",
  tags = { "ops" },
  db = false,
  result = openapi.object({ message = { type = "string", example = "Welcome to the Spacer API" } },
    { "message" }),
}, function()
  return 200, { message = "Welcome to the Spacer API" }
end)

spacer.get("/healthz", {
  summary = "Liveness: 200 while the process serves",
  tags = { "ops" },
  db = false,
  result = openapi.object({ status = { type = "string", enum = spacer.json.array({ "ok" }) } },
    { "status" }),
}, function()
    return 200, { status = "ok" }
  end)

spacer.get("/readyz", {
  summary = "Readiness: 200 when the database answers",
  tags = { "ops" },
  result = openapi.object({ status = { type = "string", enum = spacer.json.array({ "ready" }) } },
    { "status" }),
}, function()
    local ok, err = pcall(spacer.db.one, "SELECT 1 AS one")
    if not ok then
      local message = type(err) == "table" and err.message or tostring(err)
      return 503, { status = "unavailable", error = message, code = "db_unavailable" },
        { ["Retry-After"] = "1" }
    end
    return 200, { status = "ready" }
  end)

spacer.get("/metrics", {
  summary = "Prometheus metrics",
  tags = { "ops" },
  db = false,
  content = TEXT,
}, function()
  return 200, ops.metrics(), { ["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8" }
end)

spacer.post("/api/admin/reload", {
  roles = { "admin" },
  summary = "Reload the scripts and spacer.conf's application sections",
  description = "spacer.conf is read again, then every worker loads a new generation with "
    .. "its application sections; if the file or any script fails, the old one keeps "
    .. "serving and the answer is a 422 reload_failed with errors (file:line). "
    .. "restart_required names the core settings (\"server.workers\") written differently "
    .. "since start-up: they keep their start-up values until a restart.",
  result = openapi.object({
    generation = openapi.INTEGER,
    loaded_at = openapi.DATETIME,
    workers = openapi.array(WORKER),
    restart_required = openapi.array(openapi.STRING),
  }, { "generation", "loaded_at", "workers", "restart_required" }),
  responses = { [422] = "spacer.conf or a script failed to load (reload_failed, errors: file:line)",
    [503] = "the master cannot be reached (reload_unavailable)" },
  tags = { "admin" },
}, function()
  local answer, err = ops.reload()
  if not answer then
    spacer.error(503, "reload unavailable: " .. err, "reload_unavailable")
  end
  if not answer.ok then
    spacer.error(422, "reload failed; the previous generation keeps serving", {
      code = "reload_failed",
      extra = { errors = answer.errors, workers = answer.workers,
        restart_required = answer.restart_required },
    })
  end
  -- restart_required: core settings of spacer.conf ("server.workers") written differently
  -- since start-up; they keep their start-up values until a restart.
  return 200, {
    generation = answer.generation,
    loaded_at = answer.loaded_at,
    workers = answer.workers,
    restart_required = answer.restart_required,
  }
end)

spacer.get("/api/admin/status", {
  roles = { "admin" },
  summary = "Generation, reload errors and pool of every worker",
  result = openapi.object({
    generation = openapi.INTEGER,
    loaded_at = openapi.DATETIME,
    last_reload_error = openapi.TEXT_OR_NULL,
    workers = openapi.array(WORKER),
    pool = { type = "object", additionalProperties = { type = "integer" } },
  }, { "generation", "loaded_at", "workers", "pool" }),
  tags = { "admin" },
}, function()
  local workers = ops.workers()
  local newest, errors = workers[1], spacer.json.null
  local pool = { total = 0, idle = 0, busy = 0, connecting = 0, queued = 0 }
  for _, w in ipairs(workers) do
    if w.generation > newest.generation then newest = w end
    if w.last_reload_error ~= spacer.json.null then errors = w.last_reload_error end
    for k in pairs(pool) do pool[k] = pool[k] + w.pool[k] end
  end
  return 200, {
    generation = newest.generation,
    loaded_at = newest.loaded_at,
    last_reload_error = errors,
    workers = workers,
    pool = pool,
  }
end)

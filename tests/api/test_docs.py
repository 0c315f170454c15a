"""Swagger UI at /apidocs (served from memory out of web/node_modules/swagger-ui-dist), the
OpenAPI document at /apispec.json, and the node tests in tests/web (the OpenAPI validator and
headless Chromium), each run against a real server."""
import json
import os
import re
import shutil
import subprocess
import tempfile

from harness import ROOT, Server, check, eq, error_body, server, test

NODE = shutil.which("node") or "/usr/bin/node"
OUT = os.environ.get("SPACER_TEST_OUTPUT") or os.path.join(ROOT, "build", "test-output")
UI_DIR = os.path.join(ROOT, "web", "node_modules", "swagger-ui-dist")

ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui-standalone-preset.js": "text/javascript; charset=utf-8",
    "swagger-initializer.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "index.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}


def node(script, base, timeout=180):
    """Runs tests/web/<script> against base; fails with its output unless it exits 0."""
    check(os.path.isdir(os.path.join(ROOT, "web", "node_modules")),
          "web/node_modules is missing: run make deps")
    os.makedirs(OUT, exist_ok=True)
    p = subprocess.run([NODE, os.path.join(ROOT, "tests", "web", script), base, OUT],
                       cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    check(p.returncode == 0, "%s exited %s:\n%s%s" % (script, p.returncode, p.stdout, p.stderr))
    return p.stdout


def base_url(s):
    return "http://127.0.0.1:%d" % s.port


def spec():
    r = server().get("/apispec.json")
    eq(200, r.status)
    return r.json


# ---- Swagger UI's files ------------------------------------------------------------------

@test
def apidocs_page_is_ours_and_names_no_other_host():
    s = server()
    for path in ("/apidocs", "/apidocs/", "/apidocs/index.html"):
        r = s.get(path)
        eq(200, r.status, path)
        eq("text/html; charset=utf-8", r.header("content-type"), path)
        eq("no-cache", r.header("cache-control"), path)
        check(re.fullmatch(r'"[0-9a-f]{32}"', r.header("etag") or ""), r.header("etag"))
        check("/apidocs/swagger-ui-bundle.js?v=" in r.text, r.text)
        check("/apidocs/swagger-initializer.js" in r.text, r.text)
        csp = r.header("content-security-policy") or ""
        check("script-src 'self'" in csp and "connect-src 'self'" in csp, csp)
        check("<script>" not in r.text, "an inline script would need the CSP relaxed")
        # every address in the page is one of Spacer's own
        for url in re.findall(r'(?:src|href)="([^"]+)"', r.text):
            check(url.startswith("/apidocs/"), "the page loads %s" % url)
        check("http://" not in r.text and "https://" not in r.text and "//cdn" not in r.text,
              r.text)
    init = s.get("/apidocs/swagger-initializer.js")
    check('url: "/apispec.json"' in init.text and "validatorUrl: null" in init.text, init.text)


@test
def apidocs_assets_are_the_npm_package_with_types_and_caching():
    s = server()
    version = json.load(open(os.path.join(UI_DIR, "package.json")))["version"]
    eq("5.36.0", version, "the pinned swagger-ui-dist")
    for name, ctype in ASSETS.items():
        r = s.get("/apidocs/" + name)
        eq(200, r.status, name)
        eq(ctype, r.header("content-type"), name)
        eq("public, max-age=86400", r.header("cache-control"), name)
        eq("nosniff", r.header("x-content-type-options"), name)
        if name != "swagger-initializer.js":
            with open(os.path.join(UI_DIR, name), "rb") as f:
                check(r.raw == f.read(), "%s differs from the package's file" % name)
    check(len(s.get("/apidocs/swagger-ui-bundle.js").raw) > 1000000, "the bundle is the real one")


@test
def apidocs_etag_gives_304_and_changes_with_the_content():
    s = server()
    r = s.get("/apidocs/swagger-ui.css")
    etag = r.header("etag")
    check(etag, "no ETag")
    for given in (etag, "W/" + etag, '"nope", ' + etag, "*"):
        n = s.get("/apidocs/swagger-ui.css", headers={"If-None-Match": given})
        eq(304, n.status, given)
        eq(b"", n.raw, "a 304 has no body")
        eq(etag, n.header("etag"))
        eq("public, max-age=86400", n.header("cache-control"))
    eq(200, s.get("/apidocs/swagger-ui.css", headers={"If-None-Match": '"other"'}).status)
    other = s.get("/apidocs/swagger-ui-bundle.js").header("etag")
    check(other != etag, "two files, one ETag")
    # the document too
    d = s.get("/apispec.json")
    eq("no-cache", d.header("cache-control"))
    eq(304, s.get("/apispec.json", headers={"If-None-Match": d.header("etag")}).status)


@test
def apidocs_path_traversal_is_impossible():
    s = server()
    secret = "package.json"  # exists in swagger_ui_dir, and is never served
    paths = [
        "/apidocs/" + secret,
        "/apidocs/../spacer.conf",
        "/apidocs/../../spacer.conf",
        "/apidocs/..%2f..%2fspacer.conf",
        "/apidocs/..%2F..%2Fspacer.conf",
        "/apidocs/%2e%2e/%2e%2e/spacer.conf",
        "/apidocs/%2e%2e%2f%2e%2e%2fspacer.conf",
        "/apidocs/%252e%252e%252fspacer.conf",
        "/apidocs/..%252f..%252fspacer.conf",
        "/apidocs/..\\..\\spacer.conf",
        "/apidocs/..%5c..%5cspacer.conf",
        "/apidocs/%2e%2e%5cpackage.json",
        "/apidocs/./swagger-ui.css/../../spacer.conf",
        "/apidocs/swagger-ui.css%00.png",
        "/apidocs/%2fetc%2fpasswd",
        "/apidocs//etc/passwd",
        "/apidocs/.env",
        "/apidocs/swagger-ui-bundle.js.map",
        "/apidocs/index.js",
    ]
    for path in paths:
        r = s.get(path)
        check(r.status in (400, 404), "%s answered %r" % (path, r))
        check(r.header("content-type").startswith("application/json"), "%s: %r" % (path, r))
        check("[server]" not in r.text and "jwt_secret" not in r.text and "root:" not in r.text
              and '"version"' not in r.text, "%s leaked a file: %r" % (path, r))
    error_body(s.get("/apidocs/nope.js"), 404, "not_found")


@test
def apidocs_without_swagger_ui_is_a_clear_503_and_the_api_still_serves():
    empty = tempfile.mkdtemp(dir=os.path.join(ROOT, "build"))
    s = Server(workers=1, env={"SPACER_DOCS_SWAGGER_UI_DIR": empty}).start()
    try:
        body = error_body(s.get("/apidocs"), 503, "docs_unavailable")
        check("make deps" in body["error"] and "swagger_ui_dir" in body["error"], body)
        error_body(s.get("/apidocs/swagger-ui.css"), 503, "docs_unavailable")
        eq(200, s.get("/apispec.json").status)
        eq(200, s.get("/api/spaces/spaces").status)
        check("Swagger UI is not installed" in s.logs(), s.logs())
    finally:
        s.close()
        shutil.rmtree(empty, ignore_errors=True)


# spacer.files.read: only while loading, only under the working, scripts and plugins
# directories, never a hidden file nor the configuration file.
FILES_ROUTES = r'''
local results = {}
local function try(name, path)
  local body, err = spacer.files.read(path)
  results[name] = body and ("read " .. #body) or err
end
try("asset", "web/node_modules/swagger-ui-dist/swagger-ui.css")
try("script", "scripts/init.lua")
try("outside", "/etc/passwd")
try("up", "web/../../../../../../../etc/passwd")
try("hidden", ".gitignore")
try("conf", "spacer.conf")
try("dir", "web")
try("state", "STATE_FILE")
try("missing", "web/nope.txt")
spacer.get("/test/files", function() return 200, results end)
spacer.get("/test/files-now", function()
  return 200, { body = spacer.files.read("scripts/init.lua") }
end)
'''


@test
def files_read_is_for_loading_and_for_the_project_only():
    state_dir = tempfile.mkdtemp(dir=os.path.join(ROOT, "build"))
    state = os.path.join(state_dir, "state.txt")
    with open(state, "w") as f:
        f.write("run-time state\n")
    routes = FILES_ROUTES.replace("STATE_FILE", os.path.relpath(state, ROOT))
    s = Server(workers=1, extra_routes=routes,
               env={"SPACER_SERVER_PID_FILE": os.path.join(state_dir, "spacer.pid")}).start()
    try:
        r = s.get("/test/files").json
        check(r["asset"].startswith("read "), r)
        check(r["script"].startswith("read "), r)
        for name in ("outside", "up", "hidden"):
            check("outside the working" in r[name], "%s: %s" % (name, r[name]))
        check("configuration file" in r["conf"], r)
        check("run-time state" in r["state"], r)
        check("not a regular file" in r["dir"], r)
        check("No such file" in r["missing"], r)
        error_body(s.get("/test/files-now"), 500)
        check("only while a generation loads" in s.logs(), s.logs())
    finally:
        s.close()
        shutil.rmtree(state_dir, ignore_errors=True)


# ---- the OpenAPI document -----------------------------------------------------------------

def params_of(op, where):
    return {p["name"]: p for p in op.get("parameters", []) if p["in"] == where}


@test
def apispec_lists_query_parameters_from_the_validating_schemas():
    doc = spec()
    op = doc["paths"]["/api/spaces/spaces"]["get"]
    q = params_of(op, "query")
    eq(sorted(["q", "location", "min_capacity", "max_price_per_hour", "available_from",
               "available_to", "page", "per_page"]), sorted(q))
    eq({"type": "string", "maxLength": 200}, q["q"]["schema"])
    check("full-text" in q["q"]["description"], q["q"])
    eq("integer", q["min_capacity"]["schema"]["type"])
    eq(0, q["min_capacity"]["schema"]["minimum"])
    eq(1000000, q["min_capacity"]["schema"]["maximum"])
    eq("number", q["max_price_per_hour"]["schema"]["type"])
    eq(1, q["page"]["schema"]["default"])
    eq(20, q["per_page"]["schema"]["default"])
    eq(100, q["per_page"]["schema"]["maximum"])
    check(all(p["required"] is False for p in q.values()), q)
    # the bound in the document is the bound the server enforces
    s = server()
    error_body(s.get("/api/spaces/spaces?per_page=101"), 422, "validation_failed")
    eq(200, s.get("/api/spaces/spaces?per_page=100").status)
    # enums: a booking list's status, a user list's role
    status = params_of(doc["paths"]["/api/bookings/bookings"]["get"], "query")["status"]
    eq(["pending", "confirmed", "declined", "cancelled"], status["schema"]["enum"])
    role = params_of(doc["paths"]["/api/users/users"]["get"], "query")["role"]
    eq(["client", "owner", "admin"], role["schema"]["enum"])
    quote = params_of(doc["paths"]["/api/spaces/spaces/{id}/quote"]["get"], "query")
    check(quote["start"]["required"] and quote["end"]["required"], quote)
    path = params_of(doc["paths"]["/api/spaces/spaces/{id}"]["get"], "path")
    eq({"type": "integer", "minimum": 1}, path["id"]["schema"])


@test
def apispec_documents_bodies_answers_errors_and_list_headers():
    doc = spec()
    schemas = doc["components"]["schemas"]
    for name in ("Error", "User", "Space", "Booking", "Quote", "LoginResult"):
        check(name in schemas, "no %s schema" % name)
    eq(["error", "code"], schemas["Error"]["required"])
    eq({"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                       "description": "The token of POST /api/users/login."}},
       doc["components"]["securitySchemes"])

    reg = doc["paths"]["/api/users/register"]["post"]
    body = reg["requestBody"]["content"]["application/json"]["schema"]
    eq(["email", "name", "password"], body["required"])
    eq(["client", "owner"], body["properties"]["role"]["enum"])
    eq("client", body["properties"]["role"]["default"])
    check(body["properties"]["id"]["readOnly"], body["properties"]["id"])
    check("201" in reg["responses"] and "200" not in reg["responses"], reg["responses"])
    for status in ("400", "409", "413", "415", "422", "500", "503"):
        check(status in reg["responses"], "register lacks %s" % status)
    eq({"$ref": "#/components/schemas/Error"},
       reg["responses"]["409"]["content"]["application/json"]["schema"])

    lst = doc["paths"]["/api/spaces/spaces"]["get"]["responses"]["200"]
    eq({"type": "array", "items": {"$ref": "#/components/schemas/Space"}},
       lst["content"]["application/json"]["schema"])
    eq(["ETag", "Link", "X-Total-Count"], sorted(lst["headers"]))  # a public list: tagged
    mine = doc["paths"]["/api/bookings/bookings"]["get"]["responses"]["200"]
    eq(["Link", "X-Total-Count"], sorted(mine["headers"]))

    profile = doc["paths"]["/api/users/profile"]["get"]
    eq([{"bearerAuth": []}], profile["security"])
    eq({"$ref": "#/components/schemas/User"},
       profile["responses"]["200"]["content"]["application/json"]["schema"])
    check("401" in profile["responses"], profile["responses"])

    approve = doc["paths"]["/api/bookings/bookings/{id}/approve"]["patch"]
    for status in ("401", "403", "404", "409"):
        check(status in approve["responses"], "approve lacks %s" % status)
    check("owner or admin" in approve["responses"]["403"]["description"], approve["responses"])
    check("security" not in doc["paths"]["/api/spaces/spaces"]["get"], "a public list")
    check("503" not in doc["paths"]["/healthz"]["get"]["responses"], "healthz needs no database")


@test
def apispec_every_operation_has_its_answer_and_its_errors():
    doc = spec()
    error_ref = {"$ref": "#/components/schemas/Error"}
    for path, item in doc["paths"].items():
        if path.startswith("/test/"):
            continue
        for method, op in item.items():
            where = "%s %s" % (method.upper(), path)
            responses = op["responses"]
            ok = [st for st in responses if st.startswith("2")]
            eq(1, len(ok), where + " success statuses")
            check("content" in responses[ok[0]], where + " documents no success body")
            check(op.get("summary") and op.get("tags"), where + " has no summary or tag")
            if "security" in op:
                check("401" in responses, where + " lacks 401")
            if "requestBody" in op:
                for st in ("400", "413", "415", "422"):
                    check(st in responses, "%s lacks %s" % (where, st))
            if "{" in path:
                check("404" in responses, where + " lacks 404")
            check("500" in responses, where + " lacks 500")
            for st, r in responses.items():
                if st[0] in "45" and "$ref" not in r:
                    eq(error_ref, r["content"]["application/json"]["schema"], where + " " + st)


@test
def apispec_marks_compatibility_paths_deprecated_in_their_own_tag():
    doc = spec()
    tags = [t["name"] for t in doc["tags"]]
    check("compatibility" in tags and tags.index("users") < tags.index("compatibility"), tags)
    compat_paths = ["/api/login", "/api/spaces", "/api/spaces/{id}", "/api/owner/bookings",
                    "/api/owner/bookings/{id}/approve", "/api/profile"]
    for path in compat_paths:
        for method, op in doc["paths"][path].items():
            check(op.get("deprecated") is True, "%s %s is not deprecated" % (method, path))
            eq(["compatibility"], op["tags"], "%s %s" % (method, path))
    for path in ("/api/users/login", "/api/spaces/spaces", "/api/bookings/bookings"):
        for method, op in doc["paths"][path].items():
            check("deprecated" not in op and "compatibility" not in op["tags"], (path, op["tags"]))
    # every declared route is in the document, and nothing else
    r = subprocess.run([os.path.join(ROOT, "spacer"), "routes"], cwd=ROOT, capture_output=True,
                       text=True, timeout=30)
    eq(0, r.returncode, r.stderr)
    declared = set()
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            declared.add((parts[0].lower(), re.sub(r"\{(\w+):str\}", r"{\1}", parts[1])))
    documented = {(m, p) for p, item in doc["paths"].items() for m in item
                  if not p.startswith("/test/")}
    eq(set(), declared - documented, "routes missing from the document")


@test
def apispec_follows_a_reload():
    s = Server(workers=2).start()
    try:
        before = s.get("/apispec.json")
        check("/api/extra" not in before.json["paths"], "already there")
        with open(os.path.join(s.scripts, "init.lua"), "a") as f:
            f.write('\nspacer.get("/api/extra", { summary = "Added by a reload", tags = { "ops" },'
                    ' result = { type = "object" } }, function() return 200, {} end)\n')
        r = subprocess.run([os.path.join(ROOT, "spacer"), "reload"], cwd=ROOT, env=s.env,
                           capture_output=True, text=True, timeout=60)
        eq(0, r.returncode, r.stdout + r.stderr)
        for _ in range(4):  # each worker answers from its new generation
            after = s.get("/apispec.json", headers={"If-None-Match": before.header("etag")})
            eq(200, after.status, "the old ETag still matches")
            eq("Added by a reload", after.json["paths"]["/api/extra"]["get"]["summary"])
        eq(200, s.get("/apidocs/swagger-ui.css").status)
    finally:
        s.close()


@test
def apispec_documents_payments_and_invoices():
    doc = spec()
    pay = doc["paths"]["/api/payments/payments"]["post"]
    eq({"Idempotency-Key"}, set(params_of(pay, "header")))
    eq({"$ref": "#/components/schemas/Payment"},
       pay["responses"]["201"]["content"]["application/json"]["schema"]["properties"]["payment"])
    for status in ("401", "403", "404", "409", "422"):
        check(status in pay["responses"], "pay lacks %s" % status)
    status = params_of(doc["paths"]["/api/payments/payments"]["get"], "query")["status"]
    eq(["pending", "completed", "failed", "refunded"], status["schema"]["enum"])
    inv = doc["paths"]["/api/payments/invoices/{id}"]["get"]["responses"]["200"]["content"]
    eq({"$ref": "#/components/schemas/Invoice"}, inv["application/json"]["schema"])
    check("text/html" in inv, inv)
    check("text/html" in doc["paths"]["/api/payments/invoices/{id}/html"]["get"]["responses"]["200"]["content"],
          "the printable page")
    hook = doc["paths"]["/api/payments/webhooks/{provider}"]["post"]
    eq({"type": "string"}, params_of(hook, "path")["provider"]["schema"])
    check("security" not in hook, "providers call the webhook without a token")
    for path in ("/api/payments", "/api/invoices", "/api/owner/payments"):
        for op in doc["paths"][path].values():
            check(op["deprecated"] and op["tags"] == ["compatibility"], path)
    check("invoices" in [t["name"] for t in doc["tags"]], doc["tags"])


@test
def apispec_documents_conditional_get_of_the_routes_that_answer_it():
    doc = spec()
    s = server()

    def conditional(op):
        inm = params_of(op, "header").get("If-None-Match")
        etag = op["responses"].get("200", {}).get("headers", {}).get("ETag")
        return inm, etag, op["responses"].get("304")

    for path in ("/api/spaces/spaces/{id}", "/api/spaces/{id}", "/api/spaces/spaces",
                 "/api/spaces/spaces/{id}/availability", "/api/spaces/spaces/{id}/quote",
                 "/api/spaces/spaces/mine", "/apispec.json"):
        inm, etag, not_modified = conditional(doc["paths"][path]["get"])
        check(inm and not inm["required"] and inm["schema"] == {"type": "string"}, (path, inm))
        eq({"type": "string"}, (etag or {}).get("schema"), path)
        check(not_modified and "content" not in not_modified, (path, not_modified))
        check("ETag" in not_modified.get("headers", {}), (path, not_modified))
    # a paged list keeps its list headers beside the ETag
    headers = doc["paths"]["/api/spaces/spaces"]["get"]["responses"]["200"]["headers"]
    eq({"ETag", "X-Total-Count", "Link"}, set(headers))
    for path in ("/api/users/profile", "/api/bookings/bookings", "/healthz"):
        inm, etag, not_modified = conditional(doc["paths"][path]["get"])
        check(not (inm or etag or not_modified), "%s documents conditional GET" % path)
    # what the document says is what the server does
    for path in ("/api/spaces/spaces", "/api/spaces"):
        r = s.get(path)
        eq(200, r.status, path)
        tag = r.header("etag")
        check(tag, "%s: no ETag" % path)
        n = s.get(path, headers={"If-None-Match": tag})
        eq(304, n.status, path)
        eq(b"", n.raw, "a 304 has no body")
        eq(tag, n.header("etag"), path)
    r = s.get("/api/users/profile", token=s.login("admin@spacer.com", "Admin123!"))
    eq(200, r.status)
    eq(None, r.header("etag"), "the profile has no ETag")


# ---- node: the validator and the browser --------------------------------------------------

@test
def apispec_passes_an_openapi_3_validator():
    out = node("openapi_valid.js", base_url(server()))
    check("valid OpenAPI 3.0.3" in out, out)


@test
def swagger_ui_in_chromium_authorizes_and_tries_the_profile():
    out = node("swagger_ui.js", base_url(server()))
    check("Try it out: 200" in out, out)
    check(os.path.getsize(os.path.join(OUT, "swagger-ui-profile.png")) > 10000, "no screenshot")


@test
def invoice_page_in_chromium_shows_lines_and_totals():
    out = node("invoice_page.js", base_url(server()))
    check("lines, total" in out, out)
    check(os.path.getsize(os.path.join(OUT, "invoice.png")) > 10000, "no screenshot")

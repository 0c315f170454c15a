"""Static files across reloads (spacer.files.static, lib/static.lua): one shared copy per
process, never torn by a reload under keep-alive load, a file changed on disk served new after
the reload (and only then), and a large body still being written when its generation ends
arrives whole, with the bytes it had when it was sent."""
import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time

from harness import BIN, ROOT, Server, check, eq, error_body, test

UI_DIR = os.path.join(ROOT, "web", "node_modules", "swagger-ui-dist")
UI_FILES = ["swagger-ui.css", "index.css", "swagger-ui-bundle.js",
            "swagger-ui-standalone-preset.js", "favicon-32x32.png", "favicon-16x16.png"]


def reload_cli(s):
    r = subprocess.run([BIN, "reload"], cwd=ROOT, env=s.env, capture_output=True, text=True,
                       timeout=30)
    eq(0, r.returncode, "spacer reload: " + r.stdout + r.stderr)


def etag_of(data):
    return '"%s"' % hashlib.sha256(data).hexdigest()[:32]


def ui_copy():
    """A copy of swagger-ui-dist's files under the working directory (scripts may read
    there), for tests that change them."""
    os.makedirs(os.path.join(ROOT, "build"), exist_ok=True)
    d = tempfile.mkdtemp(dir=os.path.join(ROOT, "build"), prefix="ui-")
    for name in UI_FILES + ["package.json"]:
        shutil.copyfile(os.path.join(UI_DIR, name), os.path.join(d, name))
    return d


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def write_in_place(path, data):
    """Rewrites the file's bytes, same inode (as an editor saving in place does)."""
    with open(path, "r+b") as f:
        f.write(data)
        f.truncate()


def raw_get(port, path):
    """A GET on a socket that reads nothing yet: the kernel's buffers take a few MB of the
    answer (the receiver's window does not grow while nothing is read), the rest waits."""
    c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    c.settimeout(30)
    c.connect(("127.0.0.1", port))
    c.sendall(("GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path).encode())
    return c


def read_answer(c):
    """Reads one answer with a Content-Length: (head, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = c.recv(65536)
        check(chunk, "closed before the head")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = None
    for line in head.split(b"\r\n")[1:]:
        k, v = line.split(b":", 1)
        if k.strip().lower() == b"content-length":
            length = int(v)
    check(length is not None, "no Content-Length in %r" % head)
    while len(body) < length:
        chunk = c.recv(1 << 20)
        check(chunk, "closed after %d of %d bytes" % (len(body), length))
        body += chunk
    return head.decode("latin-1"), body


@test
def apidocs_assets_stay_whole_through_reloads_under_keepalive_load():
    ui = ui_copy()
    s = Server(workers=2, env={"SPACER_DOCS_SWAGGER_UI_DIR": ui}).start()
    try:
        files = {name: read_file(os.path.join(ui, name)) for name in UI_FILES}
        stop = threading.Event()
        stats = {"ok": 0, "failed": []}
        lock = threading.Lock()

        def load(offset):
            conn = s.connection(timeout=20)
            deadline = time.time() + 20  # bounded, whatever happens
            i = offset
            while not stop.is_set() and time.time() < deadline:
                name = UI_FILES[i % len(UI_FILES)]
                i += 1
                try:
                    r = s.get("/apidocs/" + name, conn=conn)
                    bad = None
                    if r.status != 200:
                        bad = "%s: %d" % (name, r.status)
                    elif r.raw != files[name]:
                        bad = "%s: %d bytes, not the file's %d" % (name, len(r.raw),
                                                                  len(files[name]))
                    elif r.header("etag") != etag_of(files[name]):
                        bad = "%s: ETag %s" % (name, r.header("etag"))
                    with lock:
                        if bad:
                            stats["failed"].append(bad)
                        else:
                            stats["ok"] += 1
                except Exception as e:  # a dropped connection is a failure too
                    with lock:
                        stats["failed"].append("%s: %r" % (name, e))
                    conn.close()
                    conn = s.connection(timeout=20)
            conn.close()

        threads = [threading.Thread(target=load, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        for _ in range(12):
            time.sleep(0.1)
            reload_cli(s)
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join(30)
        eq([], stats["failed"][:5], "torn, wrong or failed answers during the reloads")
        check(stats["ok"] >= 30, "too little load: %d" % stats["ok"])
    finally:
        s.close()
        shutil.rmtree(ui, ignore_errors=True)


@test
def a_file_changed_on_disk_is_served_new_after_a_reload_only():
    ui = ui_copy()
    s = Server(workers=1, env={"SPACER_DOCS_SWAGGER_UI_DIR": ui}).start()
    try:
        css = os.path.join(ui, "swagger-ui.css")
        index = os.path.join(ui, "index.css")
        old_css, old_index = read_file(css), read_file(index)
        eq(etag_of(old_css), s.get("/apidocs/swagger-ui.css").header("etag"))
        # The same length, rewritten in place within the second (the times may not tick):
        # the bytes decide. And another file replaced by a new one (a new inode).
        new_css = b"/*changed*/" + old_css[len(b"/*changed*/"):]
        eq(len(old_css), len(new_css))
        write_in_place(css, new_css)
        new_index = old_index + b"\n/* a new line */\n"
        with open(index + ".tmp", "wb") as f:
            f.write(new_index)
        os.rename(index + ".tmp", index)
        # no request reads the disk: the old bytes until the reload
        r = s.get("/apidocs/swagger-ui.css")
        check(r.raw == old_css, "changed before the reload")
        reload_cli(s)
        r = s.get("/apidocs/swagger-ui.css")
        check(r.raw == new_css, "swagger-ui.css not the new bytes after the reload")
        eq(etag_of(new_css), r.header("etag"))
        eq(200, s.get("/apidocs/swagger-ui.css",
                      headers={"If-None-Match": etag_of(old_css)}).status)
        eq(304, s.get("/apidocs/swagger-ui.css",
                      headers={"If-None-Match": etag_of(new_css)}).status)
        r = s.get("/apidocs/index.css")
        check(r.raw == new_index, "index.css not the new file after the reload")
        eq(etag_of(new_index), r.header("etag"))
        bundle = read_file(os.path.join(ui, "swagger-ui-bundle.js"))
        r = s.get("/apidocs/swagger-ui-bundle.js")
        check(r.raw == bundle, "an unchanged file changed")
        # a file that disappears: the reload keeps the API, the page says why it is gone
        os.unlink(index)
        reload_cli(s)
        error_body(s.get("/apidocs/index.css"), 503, "docs_unavailable")
        eq(200, s.get("/healthz").status)
    finally:
        s.close()
        shutil.rmtree(ui, ignore_errors=True)


# A body larger than the kernel's socket buffers take at once: it is still being written,
# from the process's copy, when its generation ends.
BIG_ROUTES = r'''
local big = assert(spacer.files.static("BIG_FILE", 64 * 1024 * 1024))
spacer.get("/test/big", function()
  return 200, big, { ["Content-Type"] = "application/octet-stream", ["ETag"] = big.etag }
end)
'''


@test
def a_large_body_mid_write_outlives_its_generation():
    d = tempfile.mkdtemp(dir=os.path.join(ROOT, "build"), prefix="big-")
    path = os.path.join(d, "big.bin")
    old = bytes((i * 7 + i // 4093) % 251 for i in range(1 << 16)) * 256  # 16 MiB
    with open(path, "wb") as f:
        f.write(old)
    routes = BIG_ROUTES.replace("BIG_FILE", os.path.relpath(path, ROOT))
    s = Server(workers=1, extra_routes=routes).start()
    try:
        c = raw_get(s.port, "/test/big")
        time.sleep(0.3)  # the worker writes what the socket takes, and holds the rest
        # The file changes on disk, and two reloads end the generation that answered: the
        # only reference left to the old bytes is the connection's.
        new = b"N" * len(old)
        write_in_place(path, new)
        reload_cli(s)
        reload_cli(s)
        r = s.get("/test/big")
        eq(200, r.status)
        check(r.raw == new, "not the new file after the reloads")
        head, body = read_answer(c)
        c.close()
        check(head.startswith("HTTP/1.1 200"), head)
        eq(len(old), len(body))
        if body != old:
            at = next(i for i in range(len(old)) if body[i] != old[i])
            raise AssertionError("the body mid-write changed: first difference at %d" % at)
        check(etag_of(old) in head, head)
        eq(200, s.get("/healthz").status)
    finally:
        s.close()
        shutil.rmtree(d, ignore_errors=True)


@test
def a_client_gone_mid_body_leaves_the_worker_serving():
    d = tempfile.mkdtemp(dir=os.path.join(ROOT, "build"), prefix="big-")
    path = os.path.join(d, "big.bin")
    data = os.urandom(1 << 16) * 160  # 10 MiB
    with open(path, "wb") as f:
        f.write(data)
    routes = BIG_ROUTES.replace("BIG_FILE", os.path.relpath(path, ROOT))
    s = Server(workers=1, extra_routes=routes).start()
    try:
        pid = s.worker_pids()
        for _ in range(5):
            c = raw_get(s.port, "/test/big")
            time.sleep(0.1)
            c.close()  # gone with most of the body unread
        reload_cli(s)
        r = s.get("/test/big")
        eq(200, r.status)
        check(r.raw == data, "the body after clients went away")
        eq(pid, s.worker_pids(), "the worker was replaced")
    finally:
        s.close()
        shutil.rmtree(d, ignore_errors=True)


# spacer.files.static: the rules of spacer.files.read (the project's files only, never a hidden
# one nor the configuration), a handle that tells its size and ETag and gives its text.
STATIC_RULES_ROUTES = r'''
local results = {}
local function try(name, path, max)
  local file, err = spacer.files.static(path, max)
  results[name] = file and { size = #file, etag = file.etag, text = file:text():sub(1, 9) }
    or err
end
try("script", "scripts/init.lua")
try("outside", "/etc/passwd")
try("up", "web/../../../../../../../etc/passwd")
try("hidden", ".gitignore")
try("conf", "spacer.conf")
try("dir", "web")
try("missing", "web/nope.txt")
try("limit", "scripts/init.lua", 10)
spacer.get("/test/static", function() return 200, results end)
spacer.get("/test/static-now", function()
  return 200, { file = tostring(spacer.files.static("scripts/init.lua")) }
end)
'''


@test
def files_static_keeps_the_rules_of_files_read():
    s = Server(workers=1, extra_routes=STATIC_RULES_ROUTES).start()
    try:
        r = s.get("/test/static").json
        init = read_file(os.path.join(ROOT, "scripts", "init.lua"))
        eq({"size": len(init), "etag": etag_of(init), "text": init[:9].decode()}, r["script"])
        for name in ("outside", "up", "hidden"):
            check("outside the working" in r[name], "%s: %s" % (name, r[name]))
        check("configuration file" in r["conf"], r)
        check("not a regular file" in r["dir"], r)
        check("No such file" in r["missing"], r)
        check("larger than the limit" in r["limit"], r)
        error_body(s.get("/test/static-now"), 500)
        check("only while a generation loads" in s.logs(), s.logs())
    finally:
        s.close()


@test
def check_builds_the_document_that_workers_build_on_demand():
    # Workers build /apispec.json on its first request; `spacer check` (and the master at
    # start-up) build it at load, so a declaration it cannot take is caught before serving.
    d = tempfile.mkdtemp(prefix="spacer-check-")
    try:
        scripts = os.path.join(d, "scripts")
        shutil.copytree(os.path.join(ROOT, "scripts"), scripts)
        with open(os.path.join(scripts, "routes", "undocumentable.lua"), "w") as f:
            f.write('spacer.get("/test/x", { responses = { [418] = { description = "x", '
                    'schema = print } } }, function() return 200, {} end)\n')
        with open(os.path.join(scripts, "init.lua"), "a") as f:
            f.write('\nrequire("routes.undocumentable")\n')
        env = dict(os.environ, SPACER_SCRIPTS_DIR=scripts)
        r = subprocess.run([BIN, "check"], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=60)
        check(r.returncode != 0, "spacer check passed: " + r.stdout + r.stderr)
        check("docs.lua:" in r.stderr + r.stdout and "cannot encode json" in r.stderr + r.stdout,
              r.stdout + r.stderr)
        r = subprocess.run([BIN, "check"], cwd=ROOT, env=dict(os.environ), capture_output=True,
                           text=True, timeout=60)
        eq(0, r.returncode, r.stdout + r.stderr)
    finally:
        shutil.rmtree(d, ignore_errors=True)

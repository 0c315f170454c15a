"""bench/instructions.py: a fixed number of requests, and callgrind's count of what they cost.

    /usr/bin/python3 bench/instructions.py send PORT N CONNS SEED PATH [TOKEN]
        sends N GET requests to 127.0.0.1:PORT over CONNS keep-alive connections (one request
        in flight on each: a request on every connection, then every answer, and again), with
        `Authorization: Bearer TOKEN` when TOKEN is given. In PATH, {space} becomes a space id
        drawn from BENCH_SPACE_MIN..BENCH_SPACE_MAX and {page} a page of 1..BENCH_LIST_PAGES,
        from a random sequence seeded with SEED (the same SEED, the same requests). Prints
        "sent N ok K" (K: answers with a 2xx status); exits 1 if a connection fails.
    /usr/bin/python3 bench/instructions.py total CALLGRIND_OUT
        prints the instructions (Ir) of a callgrind dump: its "totals:" (or "summary:") line.

tools/bench.sh runs Spacer with one worker under `valgrind --tool=callgrind`, warms a
scenario up, zeroes the worker's counters (`callgrind_control -z`), sends the measured
requests, dumps the counters (`callgrind_control -d`) and divides the worker's instructions
by the requests: a cost per request that does not depend on the host's speed or its other
load. Standard library only.
"""
import os
import random
import socket
import sys


def read_response(s, buf):
    """Reads one HTTP/1.1 answer from s (buf: bytes already read); returns (status, rest)."""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise OSError("connection closed by the server")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length, chunked = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if not chunked:
        while len(body) < length:
            chunk = s.recv(65536)
            if not chunk:
                raise OSError("connection closed by the server")
            body += chunk
        return status, body[length:]
    while True:  # chunked: size line, data, CRLF ... until the 0-size chunk and its CRLF
        while b"\r\n" not in body:
            chunk = s.recv(65536)
            if not chunk:
                raise OSError("connection closed by the server")
            body += chunk
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        while len(rest) < size + 2:
            chunk = s.recv(65536)
            if not chunk:
                raise OSError("connection closed by the server")
            rest += chunk
        body = rest[size + 2:]
        if size == 0:
            return status, body


def send(port, n, conns, seed, path, token):
    rnd = random.Random(seed)
    lo = int(os.environ.get("BENCH_SPACE_MIN", "1"))
    hi = int(os.environ.get("BENCH_SPACE_MAX", "1000"))
    pages = int(os.environ.get("BENCH_LIST_PAGES", "5"))
    auth = ("Authorization: Bearer %s\r\n" % token) if token else ""

    def request():
        p = path
        if "{space}" in p:
            p = p.replace("{space}", str(rnd.randint(lo, hi)))
        if "{page}" in p:
            p = p.replace("{page}", str(rnd.randint(1, pages)))
        return ("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sConnection: keep-alive\r\n\r\n" % (p, auth)).encode()

    socks = []
    for _ in range(conns):
        s = socket.create_connection(("127.0.0.1", port), timeout=120)
        socks.append([s, b""])
    sent = ok = 0
    while sent < n:
        batch = socks[:min(conns, n - sent)]
        for c in batch:
            c[0].sendall(request())
        for c in batch:
            status, c[1] = read_response(c[0], c[1])
            ok += 200 <= status < 300
        sent += len(batch)
    for c in socks:
        c[0].close()
    print("sent %d ok %d" % (sent, ok))


def total(path):
    with open(path) as f:
        for line in f:
            if line.startswith(("totals:", "summary:")):
                print(int(line.split()[1]))
                return
    raise SystemExit("instructions: no totals in %s" % path)


def main():
    if sys.argv[1:2] == ["send"] and len(sys.argv) in (7, 8):
        try:
            send(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6],
                 sys.argv[7] if len(sys.argv) == 8 else "")
        except OSError as e:
            raise SystemExit("instructions: %s" % e)
    elif sys.argv[1:2] == ["total"] and len(sys.argv) == 3:
        total(sys.argv[2])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()

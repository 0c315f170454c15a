"""bench/keepalive.py: hold N idle keep-alive HTTP connections to 127.0.0.1:PORT.

    /usr/bin/python3 bench/keepalive.py PORT N HOLD_SECONDS

Opens N connections (in a few processes, each under its own file limit), sends one
`GET /healthz` on each and reads the answer, so every connection is an idle keep-alive one,
then prints "ready <open>" and holds them for HOLD_SECONDS (or until SIGTERM), then closes
them. Standard library only. tools/bench.sh reads the workers' VmRSS while they are held.
"""
import os
import resource
import signal
import socket
import sys
import time

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n"
BATCH = 250


def read_response(s):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            raise OSError("closed")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = s.recv(4096)
        if not chunk:
            raise OSError("closed")
        body += chunk


def open_many(port, n):
    socks, failed = [], 0
    for start in range(0, n, BATCH):
        batch = []
        for _ in range(min(BATCH, n - start)):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(10)
            try:
                s.connect(("127.0.0.1", port))
                s.sendall(REQUEST)
                batch.append(s)
            except OSError:
                failed += 1
                s.close()
        for s in batch:
            try:
                read_response(s)
                socks.append(s)
            except OSError:
                failed += 1
                s.close()
    return socks, failed


def main():
    port, n, hold = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    procs = max(1, min(4, (n + 4999) // 5000))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    share = [n // procs + (1 if i < n % procs else 0) for i in range(procs)]
    pipes, pids = [], []
    for count in share:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
            socks, failed = open_many(port, count)
            os.write(w, ("%d %d\n" % (len(socks), failed)).encode())
            os.close(w)
            time.sleep(hold)
            os._exit(0)
        os.close(w)
        pipes.append(r)
        pids.append(pid)

    def stop(*_):
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
        for pid in pids:
            try:
                os.waitpid(pid, 0)
            except OSError:
                pass
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    opened = failed = 0
    for r in pipes:
        line = os.read(r, 100).decode().split()
        if len(line) == 2:
            opened += int(line[0])
            failed += int(line[1])
    print("ready %d failed %d" % (opened, failed), flush=True)
    deadline = time.time() + hold
    while time.time() < deadline:
        time.sleep(0.2)
    stop()


if __name__ == "__main__":
    main()

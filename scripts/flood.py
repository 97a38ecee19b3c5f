#!/usr/bin/env python3
"""Flood a running keyhold with unsigned requests carrying large JSON bodies
and report the server's peak RSS (VmHWM from /proc). Used for issue 14's
before/after figure:  flood.py PID HOST:PORT [N] [BODY_BYTES] [CONCURRENCY]"""
import socket, sys, threading

pid, addr = int(sys.argv[1]), sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
size = int(sys.argv[4]) if len(sys.argv) > 4 else 1 << 20
conc = int(sys.argv[5]) if len(sys.argv) > 5 else 200
host, port = addr.rsplit(":", 1)
body = b'{"KeyId":"' + b"A" * (size - 13) + b'"}'
head = (b"POST / HTTP/1.1\r\nHost: " + addr.encode() +
        b"\r\nContent-Type: application/x-amz-json-1.1\r\nX-Amz-Target: TrentService.Encrypt\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")

def status(field):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field):
            return int(line.split()[1]) // 1024
    return -1

lock = threading.Lock()
left = [n]
codes = {}
def worker():
    while True:
        with lock:
            if left[0] == 0:
                return
            left[0] -= 1
        code = "error"
        try:
            s = socket.create_connection((host, int(port)), timeout=60)
            s.sendall(head)
            try:
                s.sendall(body)
            except OSError:
                pass
            resp = s.recv(4096)
            code = resp.split(b" ", 2)[1].decode() if resp.startswith(b"HTTP/") else "closed"
            s.close()
        except OSError as e:
            code = type(e).__name__
        with lock:
            codes[code] = codes.get(code, 0) + 1

rss0 = status("VmRSS")
ts = [threading.Thread(target=worker) for _ in range(conc)]
for t in ts: t.start()
for t in ts: t.join()
print(f"requests={n} body={len(body)} concurrency={conc} rss_before_mb={rss0} peak_rss_mb={status('VmHWM')} rss_after_mb={status('VmRSS')} answers={codes}")

#!/usr/bin/env python3
"""Abusive-connection figures for issue 14 against a running keyhold:
  conns.py HOST:PORT [IDLE_CONNS] [WAIT_SECONDS]
opens IDLE_CONNS keep-alive connections from one address (one /healthz
each, then idle), a client sending its body 1 byte every 2 s, and a
well-behaved client; after WAIT_SECONDS reports how many idle connections
the server still holds and when the slow body was cut off."""
import select, socket, sys, threading, time

addr = sys.argv[1]
host, port = addr.rsplit(":", 1)
n = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
wait = float(sys.argv[3]) if len(sys.argv) > 3 else 70
req = ("GET /healthz HTTP/1.1\r\nHost: " + addr + "\r\n\r\n").encode()

held, answers = [], {}
for _ in range(n):
    try:
        s = socket.create_connection((host, int(port)), timeout=5)
        s.sendall(req)
        r = s.recv(4096)
        code = r.split(b" ", 2)[1].decode() if r.startswith(b"HTTP/") else "closed"
    except OSError as e:
        code = type(e).__name__
        s = None
    answers[code] = answers.get(code, 0) + 1
    if code == "200":
        held.append(s)
print(f"{n} keep-alive connections from one address: answers {answers}")

slow = {}
def readable(s, timeout):
    p = select.poll()
    p.register(s, select.POLLIN)
    return bool(p.poll(timeout * 1000))

def slow_body():
    # From another loopback address: the per-address cap is not what stops it.
    s = socket.create_connection((host, int(port)), source_address=("127.0.0.3", 0))
    s.sendall(("POST / HTTP/1.1\r\nHost: " + addr + "\r\nContent-Type: application/x-amz-json-1.1\r\n"
               "X-Amz-Target: TrentService.ListKeys\r\nContent-Length: 1000\r\n\r\n").encode())
    t0 = time.time()
    while time.time() - t0 < wait:
        try:
            s.sendall(b" ")
            if readable(s, 2):
                data = s.recv(4096)
                if not data or data.startswith(b"HTTP/"):
                    slow["answer"] = data.split(b"\r\n", 1)[0].decode()
                    break
        except OSError:
            break
    slow["cut"] = time.time() - t0
threading.Thread(target=slow_body, daemon=True).start()

def good():
    s = socket.create_connection((host, int(port)), timeout=5, source_address=("127.0.0.2", 0))
    s.sendall(req)
    return s.recv(4096).split(b"\r\n", 1)[0].decode()
print("well-behaved client (another address) while they are held:", good())
time.sleep(wait)
still = 0
for s in held:
    if not readable(s, 0):
        still += 1
    else:
        try:
            if s.recv(1, socket.MSG_PEEK):
                still += 1
        except OSError:
            pass
cut = slow.get("cut")
print(f"after {wait:.0f}s: {still} of {len(held)} idle connections still open; slow body "
      + (f"cut off after {cut:.0f}s ({slow.get('answer') or 'closed'})" if cut is not None and cut < wait else f"still open after {wait:.0f}s"))
print("well-behaved client after:", good())

"""The floor under the Redis store's submit: the same upload written to Redis by a bare client.

A kycgate submit on the Redis store answers only once the images are in Redis (no task is lost
when an instance dies), so its latency includes one `MULTI; HSET input <header> <images>;
PEXPIRE; EVALSHA submit.lua; EXEC` round trip carrying the whole upload. This script times that
round trip without the gateway: a blocking socket, the bench's own two images, the same frame
shape less the script (which adds its own ~30 µs of Redis time, `INFO commandstats`). Each
key is deleted after its round trip, untimed, as a task's completion would.

    python3 benches/gateway/redis_floor.py          # KYCGATE_TEST_REDIS, KYCGATE_EVAL_DIR as run.sh

Prints the round trip's p50 / p90 and Redis's CPU per upload (INFO cpu). Compare the first with
the gateway's added p50 on the Redis store (docs/PERFORMANCE.md).
"""

import os
import socket
import time
from urllib.parse import urlparse

# The bench's own images, Redis URL and CPU reading (bench.py runs nothing on import).
from bench import PASSPORT, REDIS, SELFIE, redis_cpu

N = int(os.environ.get("N", "2000"))


def command(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += [b"$%d\r\n" % len(a), a, b"\r\n"]
    return b"".join(out)


def exchange(sock, frame, replies_end):
    sock.sendall(frame)
    buf = b""
    while not buf.endswith(replies_end):
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("Redis closed the connection")
        buf += chunk


def main():
    url = urlparse(REDIS)
    sock = socket.create_connection((url.hostname or "127.0.0.1", url.port or 6379))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    selfie, passport = open(SELFIE, "rb").read(), open(PASSPORT, "rb").read()
    header = b'{"v":2,"service":"kyc_passport","owner":"key:bench","extend_data":false,"trace_context":null}'
    times = []
    cpu0 = redis_cpu(REDIS)
    for i in range(N):
        key = f"kycgate-floor:{os.getpid()}:{i}"
        frame = (command("MULTI") + command("HSET", key, "header", header, "img:passport", passport, "late:selfie", selfie)
                 + command("PEXPIRE", key, 60000) + command("EXEC"))
        t = time.perf_counter()
        exchange(sock, frame, b":1\r\n")  # EXEC's last reply: PEXPIRE's 1
        times.append((time.perf_counter() - t) * 1e6)
        exchange(sock, command("DEL", key), b":1\r\n")
    cpu = (redis_cpu(REDIS) - cpu0) * 1e6 / N
    times.sort()
    print(f"{len(selfie) + len(passport)} bytes of images per upload, {N} uploads: round trip p50 {times[N // 2]:.0f} us,"
          f" p90 {times[int(N * 0.9)]:.0f} us; Redis CPU {cpu:.0f} us per upload and its DEL")


if __name__ == "__main__":
    main()

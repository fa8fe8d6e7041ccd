"""The floor under the Redis store's submit: the same exchange with Redis, from a bare client.

A kycgate submit on the Redis store answers only once the images are in Redis (no task is lost
when an instance dies), so its latency includes one `MULTI; HSET <staging> <header> <images>;
PEXPIRE; EVALSHA submit.lua; EXEC` round trip carrying the whole upload. This script times that
round trip without the gateway, from a blocking socket with the bench's own two images, in three
shapes, alternating so that a machine slowing down shows in all of them alike:

- `plain`: the frame less the script: Redis receiving and keeping 350 KB;
- `script`: the whole frame, the gateway's own `submit.lua` (loaded from the repository) with
  arguments shaped like a real submit's: what the store adds on top;
- `claimed`: as `script`, with a worker process blocked in `XREADGROUP` on the queue that takes
  each entry as it is queued, acknowledges and deletes it, as an idle kycgate worker does: the
  whole exchange a submit waits for at c=1.

Each task's keys are deleted after its round trip, untimed.

    python3 benches/gateway/redis_floor.py          # KYCGATE_TEST_REDIS, KYCGATE_EVAL_DIR as run.sh

Prints each shape's round trip p50 / p90 and Redis's CPU per upload (INFO cpu). Compare them
with the gateway's added p50 on the Redis store (docs/PERFORMANCE.md).
"""

import multiprocessing
import os
import socket
import time
import uuid
from urllib.parse import urlparse

# The bench's own images, Redis URL and CPU reading (bench.py runs nothing on import).
from bench import PASSPORT, REDIS, REPO, SELFIE, redis_cpu

N = int(os.environ.get("N", "2000"))
ROUNDS = 4
NS = f"kycgate-floor-{os.getpid()}"
LUA = os.path.join(REPO, "src", "tasks", "store", "redis", "lua")


def script_source(name):
    """A store script as `scripts.rs` loads it: the prelude, a newline, then `name`'s body."""
    with open(os.path.join(LUA, "prelude.lua")) as p, open(os.path.join(LUA, name)) as s:
        return p.read() + "\n" + s.read()


def command(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += [b"$%d\r\n" % len(a), a, b"\r\n"]
    return b"".join(out)


class Conn:
    """A blocking Redis connection that reads whole RESP2 replies."""

    def __init__(self, url=None):
        url = urlparse(url or REDIS)
        self.sock = socket.create_connection((url.hostname or "127.0.0.1", url.port or 6379))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError("Redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind in (b"+", b":"):
            return rest
        n = int(rest)
        if kind == b"*":
            return None if n < 0 else [self.reply() for _ in range(n)]
        if n < 0:
            return None
        while len(self.buf) < n + 2:
            self.buf += self.sock.recv(65536)
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def call(self, *args):
        self.sock.sendall(command(*args))
        return self.reply()


def claimer(ready):
    """An idle worker: blocked on the queue, takes each entry, acknowledges and deletes it."""
    conn = Conn()
    queue = f"{NS}:queue"
    ready.set()
    while True:
        got = conn.call("XREADGROUP", "GROUP", "workers", "floor", "COUNT", 1, "BLOCK", 1000, "STREAMS", queue, ">")
        for _, entries in got or []:
            for entry, _ in entries:
                conn.call("XACK", queue, "workers", entry)
                conn.call("XDEL", queue, entry)


def submit_frame(sha, header, selfie, passport):
    """The gateway's submit frame (`RedisStore::submit_with`) for a new task; its keys."""
    task = str(uuid.uuid4())
    owner = "key:bench"
    staging, record, inp = f"{NS}:upload:{task}", f"{NS}:task:{task}", f"{NS}:input:{task}"
    now = int(time.time() * 1000)
    ttl = 86_400_000
    frame = (command("MULTI") + command("HSET", staging, "header", header, "img:passport", passport, "late:selfie", selfie)
             + command("PEXPIRE", staging, 60000))
    plain = frame + command("EXEC")
    if sha is None:
        return plain, 4, [staging]
    meta = ('{"id":"%s","owner":"%s","service":"kyc_passport","status":"PENDING","created_ms":%d,"updated_ms":%d,'
            '"result":null}') % (task, owner, now, now)
    frame += command("EVALSHA", sha, 9, record, inp, f"{NS}:queue", f"{NS}:inflight", f"{NS}:inflight:bytes",
                     f"{NS}:inflight:owner:bench", f"{NS}:idem:bench:", staging, f"{NS}:tasks:owner:bench",
                     task, meta, owner, now, ttl, len(selfie) + len(passport), 100_000, 1 << 40, 100_000, "", ttl,
                     f"{now:013d}.{task}", f"({now - ttl:013d}", "kyc_passport")
    return frame + command("EXEC"), 5, [staging, record, inp]


def run(conn, sha, header, selfie, passport, n):
    times = []
    cpu0 = redis_cpu(REDIS)
    for _ in range(n):
        frame, replies, keys = submit_frame(sha, header, selfie, passport)
        t = time.perf_counter()
        conn.sock.sendall(frame)
        for _ in range(replies):
            conn.reply()
        times.append((time.perf_counter() - t) * 1e6)
        conn.call("DEL", *keys)
    cpu = (redis_cpu(REDIS) - cpu0) * 1e6 / n
    # The bookkeeping sets grow by one member a task: emptied between rounds, untimed.
    conn.call("DEL", f"{NS}:inflight", f"{NS}:inflight:bytes", f"{NS}:inflight:owner:bench", f"{NS}:tasks:owner:bench")
    return times, cpu


def main():
    conn = Conn()
    selfie, passport = open(SELFIE, "rb").read(), open(PASSPORT, "rb").read()
    header = b'{"v":2,"service":"kyc_passport","owner":"key:bench","extend_data":false,"trace_context":null}'
    sha = conn.call("SCRIPT", "LOAD", script_source("submit.lua")).decode()
    conn.call("XGROUP", "CREATE", f"{NS}:queue", "workers", "0", "MKSTREAM")
    shapes = {"plain": ([], []), "script": ([], []), "claimed": ([], [])}
    try:
        for _ in range(ROUNDS):
            for shape, (times, cpus) in shapes.items():
                worker = None
                if shape == "claimed":
                    ready = multiprocessing.Event()
                    worker = multiprocessing.Process(target=claimer, args=(ready,), daemon=True)
                    worker.start()
                    ready.wait()
                    time.sleep(0.1)  # its first XREADGROUP is blocked by now
                try:
                    t, cpu = run(conn, None if shape == "plain" else sha, header, selfie, passport, N // ROUNDS)
                finally:
                    if worker:
                        worker.terminate()
                        worker.join()
                times += t
                cpus.append(cpu)
    finally:
        conn.call("DEL", f"{NS}:queue", f"{NS}:inflight", f"{NS}:inflight:bytes", f"{NS}:inflight:owner:bench",
                  f"{NS}:tasks:owner:bench")
    print(f"{len(selfie) + len(passport)} bytes of images per upload, {N} uploads per shape, {ROUNDS} rounds alternating")
    for shape, (times, cpus) in shapes.items():
        times.sort()
        cpus.sort()
        print(f"{shape:<8} round trip p50 {times[len(times) // 2]:4.0f} us, p90 {times[int(len(times) * 0.9)]:4.0f} us;"
              f" Redis CPU {cpus[len(cpus) // 2]:4.0f} us per upload (with its DEL)")


if __name__ == "__main__":
    main()

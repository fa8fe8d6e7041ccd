"""What each kyc_passport task costs Redis, command by command and script by script.

Starts a private `redis-server` (so its SLOWLOG and settings are ours alone), the simulated
vendors and the gateway on the Redis store, sends N tasks at concurrency C (wrk, as bench.py),
with every command logged (`slowlog-log-slower-than 0`), then prints per task: each top-level
command or script (`EVALSHA` named by its file in src/tasks/store/redis/lua), how often it ran
and the time Redis spent in it; then the commands the scripts and transactions ran inside.

SLOWLOG times are wall-clock inside Redis: on a loaded machine they include time Redis waited
for a CPU. With C=1 (the default) little else competes. For sizing a Redis that several
instances share, the sum is what one task costs it.

    python3 benches/gateway/redis_costs.py        # N=500 C=1; KYCGATE_BIN, KYCGATE_EVAL_DIR as run.sh
"""

import collections
import hashlib
import os
import subprocess
import tempfile

import bench
from redis_floor import LUA, Conn, script_source

N = int(os.environ.get("N", "500"))
C = int(os.environ.get("C", "1"))


def script_names():
    """SHA1 of each script as the store loads it -> its file name."""
    names = {}
    for name in os.listdir(LUA):
        if name.endswith(".lua") and name != "prelude.lua":
            names[hashlib.sha1(script_source(name).encode()).hexdigest()] = name
    return names


def main():
    bench.WORK = tempfile.mkdtemp(prefix="kycgate-redis-costs-")
    os.chmod(bench.WORK, 0o777)
    redis, url = bench.start_private_redis()
    sim = subprocess.Popen([bench.BIN, "simulate", "--scenario", os.path.join(bench.HERE, "vendors.toml"),
                            "--listen", f"127.0.0.1:{bench.SIM}"], cwd=bench.REPO, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    gw = None
    try:
        bench.wait_port(bench.SIM)
        gw = bench.start_gateway(url, bench.SIM, "costs")
        gateway = f"http://127.0.0.1:{bench.GATEWAY}"
        bench.wrk_tasks(gateway, C, 100)  # warm: connections, scripts loaded, allocator
        bench.wait_drained()
        conn = Conn(url)
        conn.call("CONFIG", "SET", "slowlog-max-len", str(200 * N))
        conn.call("CONFIG", "SET", "slowlog-log-slower-than", "0")
        conn.call("SLOWLOG", "RESET")
        submitted0 = bench.metric_sum("kycgate_tasks_submitted_total")
        bench.wrk_tasks(gateway, C, N)
        bench.wait_drained()
        conn.call("CONFIG", "SET", "slowlog-log-slower-than", "-1")
        tasks = bench.metric_sum("kycgate_tasks_submitted_total") - submitted0
        log = conn.call("SLOWLOG", "GET", str(200 * N))
    finally:
        if gw:
            bench.stop(gw)
        bench.stop(sim)
        bench.stop(redis)
    names = script_names()
    top, inner = collections.defaultdict(lambda: [0, 0]), collections.defaultdict(lambda: [0, 0])
    for entry in log:
        micros, args, client = int(entry[2]), entry[3], entry[4]
        name = args[0].decode().upper()
        if name in ("EVALSHA", "EVAL"):
            name = f"{name} " + names.get(args[1].decode().lower(), args[1].decode()[:12])
        if name.startswith("CONFIG") or name.startswith("SLOWLOG"):
            continue
        row = inner if client == b"?:0" else top  # "?:0": run by a script
        row[name][0] += 1
        row[name][1] += micros
    print(f"{tasks:.0f} tasks at c={C}; Redis time per task (SLOWLOG, wall-clock inside Redis)")
    total = sum(us for _, us in top.values())
    for title, rows in (("top-level commands and scripts", top), ("run by the scripts (in the times above)", inner)):
        print(f"\n{title}:")
        for name, (n, us) in sorted(rows.items(), key=lambda kv: -kv[1][1]):
            if us / tasks >= 0.5:
                print(f"  {name:<28} {n / tasks:5.2f} per task {us / tasks:7.1f} us per task {us / n:7.1f} us each")
    print(f"\ntotal: {total / tasks:.0f} us per task (a MULTI is logged command by command, EXEC not at all)")


if __name__ == "__main__":
    main()

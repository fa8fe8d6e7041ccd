"""kycgate against nginx on loopback, in front of the same simulated vendors (method and numbers: docs/PERFORMANCE.md).

Started by run.sh. Every server is started and stopped here, by its own pid. Prints one table:
CPU per proxied call, added latency p50/p99, finished tasks/s, with ratios to nginx; medians of
RUNS runs. SCENARIO=inflight instead piles INFLIGHT_TASKS tasks onto vendors that answer after
2 s and reports what the gateway (and Redis) hold for them.
"""

import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
BIN = os.environ.get("KYCGATE_BIN", os.path.join(REPO, "target", "release", "kycgate"))
RUNS = int(os.environ.get("RUNS", "3"))
LATENCY_SECS = int(os.environ.get("LATENCY_SECS", "5"))
LATENCY_REQUESTS = int(os.environ.get("LATENCY_REQUESTS", "1000"))
THROUGHPUT_TASKS = int(os.environ.get("TASKS", "2000"))
NGINX_SECS = int(os.environ.get("NGINX_SECS", "10"))
CONCURRENCY = int(os.environ.get("CONCURRENCY", "64"))
STORES = os.environ.get("STORES", "memory redis").split()
REDIS = os.environ.get("KYCGATE_TEST_REDIS", "redis://127.0.0.1:6379")
# LD_PRELOAD for the gateway (an allocator to compare), empty = the binary's own.
PRELOAD = os.environ.get("BENCH_PRELOAD", "")
EVAL = os.environ.get("KYCGATE_EVAL_DIR", os.path.join(REPO, "..", "shared", "eval"))
SELFIE = os.environ.get("BENCH_SELFIE", os.path.join(EVAL, "faces/deepface/img20.jpg"))
PASSPORT = os.environ.get("BENCH_PASSPORT", os.path.join(EVAL, "documents/passporteye_100_pass-uto.jpg"))
SCENARIO = os.environ.get("SCENARIO", "proxy")
# SUBMIT_ALONE=1: one more c=1 latency run per store with every vendor refusing the connection
# at once, so each task fails within microseconds and no task work competes with the next
# submit: the submit's own added latency, apart from its tasks' (docs/PERFORMANCE.md).
SUBMIT_ALONE = os.environ.get("SUBMIT_ALONE") == "1"
# SCENARIO=inflight: tasks submitted in one burst, workers, RAM bound of the memory store's
# queued images (past it they spill to a directory), and how long RSS is watched afterwards.
INFLIGHT_TASKS = int(os.environ.get("INFLIGHT_TASKS", "10000"))
INFLIGHT_WORKERS = int(os.environ.get("INFLIGHT_WORKERS", "512"))
INFLIGHT_RAM = int(os.environ.get("INFLIGHT_MEMORY_MAX_BYTES", str(64 << 20)))
INFLIGHT_AFTER = int(os.environ.get("INFLIGHT_AFTER_SECS", "60"))
SIM, GATEWAY, NGINX, CAPTURE, PRIVATE_REDIS = 19100, 19180, 19190, 19170, 19179
KEY = "benchkey"
TICK = os.sysconf("SC_CLK_TCK")


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def wait_port(port, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout}s")


def cpu_seconds(pids):
    """User + system CPU of the processes so far (utime, stime of /proc/<pid>/stat)."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / TICK


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def vendor_env(base):
    env = dict(os.environ)
    env.update(
        REGULA_BASE_URL=f"http://127.0.0.1:{base}/regula",
        KBYAI_BASE_URL=f"http://127.0.0.1:{base}/kbyai",
        COMPREFACE_BASE_URL=f"http://127.0.0.1:{base}/compreface",
        COMPREFACE_API_KEY="sim",
    )
    return env


def start_gateway(store, vendors_port, namespace, extra_env=None):
    env = vendor_env(vendors_port)
    env["KYCGATE__STORE__NAMESPACE"] = namespace
    env.update(extra_env or {})
    if PRELOAD:
        env["LD_PRELOAD"] = PRELOAD
    cmd = [BIN, "--config", os.path.join(HERE, "gateway.toml"), "serve", "--store", store, "--api-key", KEY]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=open(os.path.join(WORK, "gateway.log"), "a"))
    wait_port(GATEWAY)
    return proc


def metric_sum(name, **labels):
    text = urllib.request.urlopen(f"http://127.0.0.1:{GATEWAY}/metrics", timeout=10).read().decode()
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_drained(timeout=300):
    return wait_finished(timeout)


def wait_finished(timeout):
    """Waits until every submitted task finished; returns when the last one did."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        submitted = metric_sum("kycgate_tasks_submitted_total")
        finished = metric_sum("kycgate_tasks_finished_total")
        if finished >= submitted:
            return time.time()
        time.sleep(0.02)
    raise RuntimeError("tasks did not finish")


def wrk_cmd(url, script, conns, secs, env_extra, latency=True):
    """The wrk command line and environment. With `latency`, `submit.lua` writes wrk's whole
    latency histogram to `env["BENCH_HIST"]` when the run ends (`parse_wrk` reads it)."""
    env = dict(os.environ)
    env.update(BENCH_SELFIE=SELFIE, BENCH_PASSPORT=PASSPORT, BENCH_KEY=KEY, BENCH_HIST="", **env_extra)
    threads = 1 if conns == 1 else 2
    cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{secs}s", "--timeout", "30s", "-s", os.path.join(HERE, script), url]
    if latency:
        cmd.insert(1, "--latency")
        env["BENCH_HIST"] = os.path.join(WORK, f"latency-{uuid.uuid4().hex[:8]}.txt")
    return cmd, env


def wrk(url, script, conns, secs, env_extra, latency=True):
    cmd, env = wrk_cmd(url, script, conns, secs, env_extra, latency)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return parse_wrk(out, env["BENCH_HIST"])


def wrk_tasks(url, conns, tasks, latency=False):
    return wrk_burst(url, conns, tasks, latency)[0]


def wrk_burst(url, conns, tasks, latency=False):
    """Submits about `tasks` uploads from `conns` connections, then stops wrk (SIGINT: it
    prints its summary). wrk's threads stop themselves at their share; wrk itself would wait
    out its duration."""
    share = tasks if conns == 1 else tasks // 2
    cmd, env = wrk_cmd(url, "submit.lua", conns, 3600, {"BENCH_MAX": str(share)}, latency=latency)
    before = metric_sum("kycgate_tasks_submitted_total")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    last, still = -1.0, 0
    while time.time() < deadline:
        time.sleep(0.05)
        n = metric_sum("kycgate_tasks_submitted_total") - before
        # Done when the share is in, or when nothing more arrives (refusals count for wrk only).
        still = still + 1 if n == last else 0
        last = n
        if n >= tasks or (n > 0 and still >= 40):
            break
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    return parse_wrk(out, env["BENCH_HIST"]), last


def to_ms(value):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", value)
    if not m:
        raise ValueError(value)
    n, unit = float(m.group(1)), m.group(2)
    return n * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def parse_wrk(out, hist=""):
    """wrk's summary; with `hist` (the file `submit.lua` wrote) also its latency histogram as
    [microseconds, count] pairs under "hist"."""
    res = {"raw": out}
    if hist:
        with open(hist) as f:
            res["hist"] = [[int(v), int(c)] for v, c in (line.split() for line in f if line.strip())]
    for p in ("50", "99"):
        m = re.search(rf"^\s+{p}%\s+(\S+)", out, re.M)
        if m:
            res[f"p{p}"] = to_ms(m.group(1))
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    res["requests"] = int(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: (.*)", out)
    res["socket_errors"] = m.group(1) if m else ""
    return res


def capture_requests():
    """Records the three vendor requests of one kyc_passport task, as kycgate sends them."""
    out = os.path.join(WORK, "req")
    os.makedirs(out, exist_ok=True)
    cap = subprocess.Popen([sys.executable, os.path.join(HERE, "capture.py"), str(CAPTURE), out, REPO])
    try:
        wait_port(CAPTURE)
        gw = start_gateway("memory", CAPTURE, "capture")
        try:
            subprocess.run(
                ["curl", "-sf", "-H", f"Authorization: Bearer {KEY}", "-F", f"selfie_image=@{SELFIE}",
                 "-F", f"passport_image=@{PASSPORT}", f"http://127.0.0.1:{GATEWAY}/api/v3/services/kyc_passport/"],
                check=True, capture_output=True)
            wait_drained()
        finally:
            stop(gw)
    finally:
        stop(cap)
    for vendor in ("regula", "kbyai", "compreface"):
        if not os.path.exists(os.path.join(out, vendor + ".body")):
            raise RuntimeError(f"kycgate made no {vendor} request (see {WORK}/gateway.log)")
    return out


def bench_submit_alone(store_name):
    """c=1 submits whose tasks fail at once: vendors on a port nothing listens on."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]  # bound, never listening: connections are refused
    refused = {f"{v}_BASE_URL": f"http://127.0.0.1:{port}/{v.lower()}" for v in ("REGULA", "KBYAI", "COMPREFACE")}
    namespace = f"kycgate-bench-{uuid.uuid4().hex[:8]}"
    gw = start_gateway("memory" if store_name == "memory" else REDIS, SIM, namespace, refused)
    try:
        lat = wrk_tasks(f"http://127.0.0.1:{GATEWAY}", 1, LATENCY_REQUESTS, latency=True)
        wait_drained()
        return {"p50": lat["p50"], "p99": lat["p99"], "hist": lat["hist"]}
    finally:
        stop(gw)
        closed.close()
        if store_name != "memory":
            redis_cleanup(namespace)


def redis_cleanup(namespace):
    keys = subprocess.run(["redis-cli", "-u", REDIS, "--scan", "--pattern", f"{namespace}*"], capture_output=True, text=True).stdout.split()
    for i in range(0, len(keys), 500):
        subprocess.run(["redis-cli", "-u", REDIS, "del", *keys[i:i + 500]], capture_output=True)


def bench_gateway(store_name):
    namespace = f"kycgate-bench-{uuid.uuid4().hex[:8]}"
    store = "memory" if store_name == "memory" else REDIS
    gw = start_gateway(store, SIM, namespace)
    try:
        url = f"http://127.0.0.1:{GATEWAY}"
        # Latency: one client, one upload at a time; each task runs while the next is sent.
        lat = wrk_tasks(url, 1, LATENCY_REQUESTS, latency=True)
        wait_drained()
        # Throughput: 64 clients, a fixed number of tasks, until every one finished.
        ok0 = metric_sum("kycgate_tasks_finished_total", outcome="SUCCESS")
        done0 = metric_sum("kycgate_tasks_finished_total")
        redis0 = redis_cpu(REDIS) if store_name != "memory" else 0.0
        kept0 = metric_sum("kycgate_store_input_reads_total", source="kept")
        read0 = metric_sum("kycgate_store_input_reads_total", source="redis")
        cpu0, t0 = cpu_seconds([gw.pid]), time.time()
        thr = wrk_tasks(url, CONCURRENCY, THROUGHPUT_TASKS)
        t1 = wait_drained()
        cpu1 = cpu_seconds([gw.pid])
        redis1 = redis_cpu(REDIS) if store_name != "memory" else 0.0
        kept = metric_sum("kycgate_store_input_reads_total", source="kept") - kept0
        read = metric_sum("kycgate_store_input_reads_total", source="redis") - read0
        ok = metric_sum("kycgate_tasks_finished_total", outcome="SUCCESS") - ok0
        done = metric_sum("kycgate_tasks_finished_total") - done0
        rss_peak = rss_mb(gw.pid)
        time.sleep(5)
        rss_after = rss_mb(gw.pid)
        return {
            "p50": lat["p50"], "p99": lat["p99"], "latency_requests": lat["requests"], "hist": lat["hist"],
            "cpu_ms_per_call": (cpu1 - cpu0) * 1000 / max(ok, 1),
            "redis_cpu_ms_per_task": (redis1 - redis0) * 1000 / max(ok, 1),
            "inputs_kept": kept / max(kept + read, 1),
            "tasks_per_s": ok / (t1 - t0), "succeeded": ok, "finished": done,
            "refused": thr["non2xx"], "rss_at_end_mb": rss_peak, "rss_after_5s_mb": rss_after,
        }
    finally:
        stop(gw)
        if store_name != "memory":
            redis_cleanup(namespace)


class Sampler(threading.Thread):
    """Samples the gateway's RSS, tasks in flight (submitted - finished) and Redis used memory
    every `period` seconds until stopped; keeps the peaks."""

    def __init__(self, pid, redis_url, period=0.25):
        super().__init__(daemon=True)
        self.pid, self.redis_url, self.period = pid, redis_url, period
        self.halt = threading.Event()
        self.peak_rss = self.peak_inflight = 0.0
        self.redis_base = redis_used(redis_url) if redis_url else 0
        self.peak_redis = (0, 0)  # (used memory over the baseline, tasks in flight then)

    def run(self):
        while not self.halt.is_set():
            try:
                self.peak_rss = max(self.peak_rss, rss_mb(self.pid))
                inflight = metric_sum("kycgate_tasks_submitted_total") - metric_sum("kycgate_tasks_finished_total")
                self.peak_inflight = max(self.peak_inflight, inflight)
                if self.redis_url:
                    used = redis_used(self.redis_url) - self.redis_base
                    if used > self.peak_redis[0]:
                        self.peak_redis = (used, inflight)
            except (OSError, ValueError):
                pass
            self.halt.wait(self.period)

    def stop(self):
        self.halt.set()
        self.join()


def redis_cpu(url):
    """The Redis server's CPU seconds so far (user + system, INFO cpu): its cost per task, apart
    from the gateway's. The machine's Redis may serve others too: run nothing else on it."""
    out = subprocess.run(["redis-cli", "-u", url, "info", "cpu"], capture_output=True, text=True, check=True).stdout
    return sum(float(m) for m in re.findall(r"^used_cpu_(?:user|sys):([\d.]+)", out, re.M))


def redis_used(url):
    out = subprocess.run(["redis-cli", "-u", url, "info", "memory"], capture_output=True, text=True, check=True).stdout
    return int(re.search(r"^used_memory:(\d+)", out, re.M).group(1))


def bench_inflight(store_name, redis_url):
    """INFLIGHT_TASKS submitted in one burst from CONCURRENCY connections onto 2 s vendors:
    all must finish (none refused); peak RSS, RSS INFLIGHT_AFTER seconds after the last one
    finished, Redis used memory against the raw image bytes of the tasks then in flight."""
    namespace = f"kycgate-bench-{uuid.uuid4().hex[:8]}"
    spill = os.path.join(WORK, f"spill-{namespace}")
    env = {
        "KYCGATE__WORKER__CONCURRENCY": str(INFLIGHT_WORKERS),
        "KYCGATE__STORE__MAX_QUEUED_TASKS": str(max(INFLIGHT_TASKS, 10000)),
        "KYCGATE__STORE__MAX_QUEUED_PER_OWNER": str(max(INFLIGHT_TASKS, 10000)),
        "KYCGATE__STORE__MEMORY_MAX_BYTES": str(INFLIGHT_RAM),
        "KYCGATE__STORE__SPILL_DIR": spill,
    }
    store = "memory" if store_name == "memory" else redis_url
    gw = start_gateway(store, SIM, namespace, env)
    sampler = Sampler(gw.pid, None if store_name == "memory" else redis_url)
    try:
        url = f"http://127.0.0.1:{GATEWAY}"
        ok0 = metric_sum("kycgate_tasks_finished_total", outcome="SUCCESS")
        sub0 = metric_sum("kycgate_tasks_submitted_total")
        sampler.start()
        t0 = time.time()
        burst, _ = wrk_burst(url, CONCURRENCY, INFLIGHT_TASKS)
        t_submitted = time.time()
        wait_finished(timeout=1800)
        t1 = time.time()
        rss_end = rss_mb(gw.pid)
        time.sleep(INFLIGHT_AFTER)
        sampler.stop()
        ok = metric_sum("kycgate_tasks_finished_total", outcome="SUCCESS") - ok0
        # wrk stops a few dozen submits past INFLIGHT_TASKS (those already sent): count them all.
        submitted = metric_sum("kycgate_tasks_submitted_total") - sub0
        redis_peak, redis_inflight = sampler.peak_redis
        return {
            "submitted": submitted, "succeeded": ok, "refused": burst["non2xx"], "socket_errors": burst["socket_errors"],
            "submit_secs": t_submitted - t0, "finish_secs": t1 - t0, "peak_inflight": sampler.peak_inflight,
            "peak_rss_mb": sampler.peak_rss, "rss_at_end_mb": rss_end, "rss_after_mb": rss_mb(gw.pid),
            "redis_peak_mb": redis_peak / 2**20, "redis_raw_mb": redis_inflight * UPLOAD_BYTES / 2**20,
        }
    finally:
        if sampler.is_alive():
            sampler.stop()
        stop(gw)
        shutil.rmtree(spill, ignore_errors=True)


def start_private_redis():
    """A Redis of our own for the in-flight run, so its memory is ours alone."""
    proc = subprocess.Popen(["redis-server", "--port", str(PRIVATE_REDIS), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", WORK], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(PRIVATE_REDIS)
    return proc, f"redis://127.0.0.1:{PRIVATE_REDIS}"


def main_inflight():
    log(f"binary {BIN}; in flight: {INFLIGHT_TASKS} tasks from {CONCURRENCY} connections, vendors answering after 2 s, "
        f"{INFLIGHT_WORKERS} workers, memory store RAM bound {INFLIGHT_RAM} bytes; work dir {WORK}")
    sim = subprocess.Popen([BIN, "simulate", "--scenario", os.path.join(HERE, "vendors-2s.toml"), "--listen", f"127.0.0.1:{SIM}"],
                           cwd=REPO, stdout=subprocess.DEVNULL, stderr=open(os.path.join(WORK, "sim.log"), "a"))
    redis, redis_url = (None, None) if STORES == ["memory"] else start_private_redis()
    results = {s: [] for s in STORES}
    try:
        wait_port(SIM)
        for run in range(1, RUNS + 1):
            for store in STORES:
                results[store].append(bench_inflight(store, redis_url))
                if redis_url:
                    subprocess.run(["redis-cli", "-u", redis_url, "flushall"], capture_output=True)
            log(f"run {run}/{RUNS}: " + json.dumps({k: v[-1] for k, v in results.items()}))
    finally:
        stop(sim)
        if redis:
            stop(redis)
    print(f"\n{INFLIGHT_TASKS} tasks in flight on vendors answering after 2 s; {INFLIGHT_WORKERS} workers; medians of {RUNS} runs")
    head = (f"{'store':<10}{'submitted':>10}{'succeeded':>10}{'refused':>9}{'peak in flight':>16}{'peak RSS':>10}{'RSS at end':>12}"
            f"{f'RSS {INFLIGHT_AFTER}s after':>16}{'Redis used':>12}{'raw images':>12}{'ratio':>7}{'all done in':>13}")
    print(head)
    print("-" * len(head))
    for store in STORES:
        rows = results[store]
        redis_cols = (f"{median(rows, 'redis_peak_mb'):>9.0f} MB{median(rows, 'redis_raw_mb'):>9.0f} MB"
                      f"{median(rows, 'redis_peak_mb') / max(median(rows, 'redis_raw_mb'), 1e-9):>7.2f}") if store != "memory" else f"{'':>31}"
        print(f"{store:<10}{median(rows, 'submitted'):>10.0f}{median(rows, 'succeeded'):>10.0f}{median(rows, 'refused'):>9.0f}{median(rows, 'peak_inflight'):>16.0f}"
              f"{median(rows, 'peak_rss_mb'):>7.0f} MB{median(rows, 'rss_at_end_mb'):>9.0f} MB{median(rows, 'rss_after_mb'):>13.0f} MB"
              f"{redis_cols}{median(rows, 'finish_secs'):>11.0f} s")
    print("\nRedis used: used_memory over its value before the burst, at its peak (records included);"
          " raw images: the image bytes of the tasks in flight at that moment.")
    for store in STORES:
        bad = [(r["submitted"], r["succeeded"], r["refused"]) for r in results[store]
               if r["succeeded"] != r["submitted"] or r["submitted"] < INFLIGHT_TASKS or r["refused"]]
        if bad:
            print(f"WARNING {store}: runs where not every task succeeded (submitted, succeeded, refused): {bad}")
    return results


def nginx_pids(master):
    children = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout.split()
    return [master, *map(int, children)]


def bench_nginx(req_dir):
    conf = os.path.join(WORK, "nginx.conf")
    with open(os.path.join(HERE, "nginx.conf")) as f:
        text = f.read().replace("@DIR@", WORK)
    with open(conf, "w") as f:
        f.write(text)
    proc = subprocess.Popen(["nginx", "-c", conf, "-p", WORK, "-g", "daemon off;"], stderr=open(os.path.join(WORK, "nginx.log"), "a"))
    try:
        wait_port(NGINX)
        url = f"http://127.0.0.1:{NGINX}"
        lat = wrk(url, "submit.lua", 1, LATENCY_SECS, {})
        pids = nginx_pids(proc.pid)
        cpu0, t0 = cpu_seconds(pids), time.time()
        thr = wrk(url, "four.lua", CONCURRENCY, NGINX_SECS, {"BENCH_REQ": req_dir, "BENCH_PREFIX": ""}, latency=False)
        t1 = time.time()
        cpu1 = cpu_seconds(pids)
        calls = thr["requests"] / 4
        return {
            "p50": lat["p50"], "p99": lat["p99"], "hist": lat["hist"],
            "cpu_ms_per_call": (cpu1 - cpu0) * 1000 / max(calls, 1),
            "calls_per_s": calls / (t1 - t0), "non2xx": thr["non2xx"] + lat["non2xx"],
        }
    finally:
        stop(proc)


def bench_direct():
    """The same upload straight to the simulated backend: what an instant server costs."""
    lat = wrk(f"http://127.0.0.1:{SIM}", "submit.lua", 1, LATENCY_SECS, {"BENCH_PATH": "/upload/api/v3/services/kyc_passport/"})
    return {"p50": lat["p50"], "p99": lat["p99"], "hist": lat["hist"]}


def median(rows, key):
    return statistics.median(r[key] for r in rows)


def main():
    global WORK, UPLOAD_BYTES
    WORK = tempfile.mkdtemp(prefix="kycgate-bench-")
    os.chmod(WORK, 0o777)
    UPLOAD_BYTES = os.path.getsize(SELFIE) + os.path.getsize(PASSPORT)
    if SCENARIO == "inflight":
        results = main_inflight()
        if os.environ.get("BENCH_JSON"):
            with open(os.environ["BENCH_JSON"], "w") as f:
                json.dump(results, f, indent=1)
        if not os.environ.get("BENCH_KEEP_WORK"):
            shutil.rmtree(WORK, ignore_errors=True)
        return
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        os.makedirs(os.path.join(WORK, sub), mode=0o777, exist_ok=True)
    log(f"binary {BIN}; upload {os.path.getsize(SELFIE) + os.path.getsize(PASSPORT)} bytes of images; work dir {WORK}")
    sim = subprocess.Popen([BIN, "simulate", "--scenario", os.path.join(HERE, "vendors.toml"), "--listen", f"127.0.0.1:{SIM}"],
                           cwd=REPO, stdout=subprocess.DEVNULL, stderr=open(os.path.join(WORK, "sim.log"), "a"))
    results = {"direct": [], "nginx": [], **{s: [] for s in STORES}}
    if SUBMIT_ALONE:
        results.update({f"alone {s}": [] for s in STORES})
    try:
        wait_port(SIM)
        req_dir = capture_requests()
        for run in range(1, RUNS + 1):
            results["direct"].append(bench_direct())
            results["nginx"].append(bench_nginx(req_dir))
            for store in STORES:
                results[store].append(bench_gateway(store))
            if SUBMIT_ALONE:
                for store in STORES:
                    results[f"alone {store}"].append(bench_submit_alone(store))
            log(f"run {run}/{RUNS}: " + json.dumps({k: v[-1] for k, v in results.items()}))
    finally:
        stop(sim)
    report(results)
    report_tail(results)
    if os.environ.get("BENCH_JSON"):
        with open(os.environ["BENCH_JSON"], "w") as f:
            json.dump(results, f, indent=1)
    shutil.rmtree(WORK, ignore_errors=True)


def report(results):
    d50, d99 = median(results["direct"], "p50"), median(results["direct"], "p99")
    ng = results["nginx"]
    n_cpu = median(ng, "cpu_ms_per_call")
    n50, n99 = median(ng, "p50"), median(ng, "p99")
    print(f"\nkycgate vs nginx, loopback, vendors answering at once; medians of {RUNS} runs")
    print(f"upload: {os.path.basename(SELFIE)} + {os.path.basename(PASSPORT)}; c=1 latency over {LATENCY_REQUESTS} submits "
          f"(nginx, direct: {LATENCY_SECS}s), c={CONCURRENCY} throughput over {THROUGHPUT_TASKS} tasks (nginx: {NGINX_SECS}s of the four exchanges)")
    print(f"direct upload to the simulated backend: p50 {d50:.3f} ms, p99 {d99:.3f} ms; 'added p50' = p50 - direct p50\n")
    head = (f"{'server':<16}{'CPU/call':>11}{'x nginx':>9}{'added p50':>12}{'x nginx':>9}{'p50':>10}{'p99':>10}{'x nginx':>9}"
            f"{'tasks/s':>9}{'RSS after':>11}")
    print(head)
    print("-" * len(head))
    a_n50 = max(n50 - d50, 1e-3)
    print(f"{'nginx':<16}{n_cpu * 1000:>8.0f} us{'1.0':>9}{a_n50:>9.3f} ms{'1.0':>9}{n50:>7.3f} ms{n99:>7.3f} ms{'1.0':>9}"
          f"{median(ng, 'calls_per_s'):>9.0f}{'':>11}")
    for store in STORES:
        rows = results[store]
        cpu = median(rows, "cpu_ms_per_call")
        p50, p99 = median(rows, "p50"), median(rows, "p99")
        print(f"{'kycgate ' + store:<16}{cpu * 1000:>8.0f} us{cpu / n_cpu:>9.1f}{p50 - d50:>9.3f} ms{(p50 - d50) / a_n50:>9.1f}"
              f"{p50:>7.3f} ms{p99:>7.3f} ms{p99 / n99:>9.1f}{median(rows, 'tasks_per_s'):>9.0f}{median(rows, 'rss_after_5s_mb'):>8.0f} MB")
    for store in STORES if SUBMIT_ALONE else ():
        rows = results[f"alone {store}"]
        p50, p99 = median(rows, "p50"), median(rows, "p99")
        print(f"{'alone ' + store:<16}{'':>11}{'':>9}{p50 - d50:>9.3f} ms{(p50 - d50) / a_n50:>9.1f}"
              f"{p50:>7.3f} ms{p99:>7.3f} ms{p99 / n99:>9.1f}")
    print("\nCPU/call: server CPU (utime+stime) per proxied call = one task (upload + 3 vendor exchanges);"
          " nginx: per 4 proxied requests.\np50/p99: the client's upload at c=1 (kycgate: the submit).\n"
          "tasks/s: tasks that reached SUCCESS per second, first submit to last finish"
          " (nginx: groups of 4 exchanges per second).")
    for store in STORES:
        if store != "memory":
            print(f"Redis server CPU per task ({store} row, c={CONCURRENCY}): {median(results[store], 'redis_cpu_ms_per_task') * 1000:.0f} us"
                  " (INFO cpu; not in the CPU/call column, which is the gateway's own); inputs kept for the instance's"
                  f" own workers, not read back: {median(results[store], 'inputs_kept') * 100:.0f}%.")
    if SUBMIT_ALONE:
        print("alone <store>: that store's c=1 submits with every vendor refusing the connection, so no task work"
              " competes with them.")
    for store in STORES:
        bad = [(r["succeeded"], r["finished"], r["refused"]) for r in results[store] if r["succeeded"] != r["finished"] or r["refused"]]
        if bad:
            print(f"WARNING {store}: runs with failed or refused tasks (succeeded, finished, refused): {bad}")


def report_tail(results):
    """The long tail of the c=1 latencies: every run's wrk histogram (exact to the microsecond)
    merged per server into an HdrHistogram, printed as a percentile table and written as
    HdrHistogram percentile distributions (`.hgrm`, milliseconds) for the HdrHistogram plotter."""
    from hdrh.histogram import HdrHistogram

    out_dir = os.environ.get("BENCH_HGRM_DIR") or os.path.join(REPO, "target", "bench-gateway")
    os.makedirs(out_dir, exist_ok=True)
    percentiles = (50, 90, 99, 99.9, 99.99)
    head = f"{'server':<16}" + "".join(f"{'p' + format(p, 'g'):>10}" for p in percentiles) + f"{'max':>10}{'count':>8}"
    print(f"\nc=1 latency tail in ms, all {RUNS} runs merged (HdrHistogram, 3 significant digits); percentile"
          f" distributions in {out_dir}/latency-<server>.hgrm")
    print(head)
    print("-" * len(head))
    for server, rows in results.items():
        hist = HdrHistogram(1, 60_000_000, 3)  # microseconds, up to 60 s
        for row in rows:
            for value, count in row.get("hist", []):
                hist.record_value(max(value, 1), count)
        if hist.get_total_count() == 0:
            continue
        cells = "".join(f"{hist.get_value_at_percentile(p) / 1000:>10.3f}" for p in percentiles)
        print(f"{server:<16}{cells}{hist.get_max_value() / 1000:>10.3f}{hist.get_total_count():>8}")
        with open(os.path.join(out_dir, f"latency-{server.replace(' ', '-')}.hgrm"), "wb") as f:
            hist.output_percentile_distribution(f, 1000)


if __name__ == "__main__":
    main()

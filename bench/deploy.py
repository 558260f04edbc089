#!/usr/bin/env python3
"""Helpers for bench/deploy (Python standard library only).

  deploy.py setup URL OUT.json                  admin (POST /setup), admin API token
  deploy.py scaffold URL STATE.json PORT        project, environments, services (ids into STATE.json)
  deploy.py hosts URL STATE.json ENV NAME N OUT host(s) for environment ENV (a key of STATE.json,
                                                or "none"), one-time enrollment tokens: lines "id token"
  deploy.py wait-online URL STATE.json HOSTS TIMEOUT_S
  deploy.py first URL STATE.json SERVICE IMAGE  untimed deploy (waits until succeeded)
  deploy.py overhead URL STATE.json PORT N OUT settled|back-to-back
                                               N deploys, POST → first GET / of the new version
  deploy.py zero URL STATE.json PORT N OUT      N deploys under wrk (zero failed requests)
  deploy.py fanout URL STATE.json N OUT         N timed deploys of "fan" (20 hosts) and "one" (1 host)
  deploy.py report RESULTS_DIR OUT.md           markdown table from the JSON files of one run

STATE.json holds the API token and the ids. Only loopback addresses are ever contacted.
"""
import http.client
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True  # no bench/__pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import Api, check_loopback, die, ok  # noqa: E402

IMAGES = {"v1": "slipway-test/web:v1", "v2": "slipway-test/web:v2"}
FINAL = {"succeeded", "failed", "rolled_back", "cancelled", "rejected"}
DEPLOY_TIMEOUT_S = float(os.environ.get("BENCH_DEPLOY_TIMEOUT", "180"))


def load_json(path):
    with open(path) as f:
        return json.load(f)


def save_json(path, value):
    with open(path, "w") as f:
        json.dump(value, f, indent=1)


def api_for(url, state):
    api = Api(url)
    api.headers = {"Authorization": f"Bearer {state['token']}"}
    return api


# ------------------------------------------------------------------ setup


def setup(url, out):
    api = Api(url)
    resp, me = api.call("POST", "/api/v1/setup", {"username": "bench-admin", "password": "bench-password-1234"})
    cookie = None
    for name, value in resp.getheaders():
        if name.lower() == "set-cookie" and value.startswith("slipway_session="):
            cookie = value.split(";", 1)[0]
    if not cookie or not me.get("csrf_token"):
        die(f"setup gave no session cookie / csrf_token: {me}")
    api.headers = {"Cookie": cookie, "X-CSRF-Token": me["csrf_token"]}
    _, created = api.call("POST", "/api/v1/tokens", {"name": "bench-deploy", "role": "admin", "environments": []})
    save_json(out, {"token": created["secret"]})


def web_spec(replicas, port=None):
    spec = {
        "image": IMAGES["v1"],
        "replicas": replicas,
        "health_check": {"path": "/healthz", "port": 8080, "interval_secs": 1, "timeout_secs": 1, "retries": 10},
    }
    if port is not None:
        spec["ports"] = [{"container": 8080, "published": port}]
    return spec


def scaffold(url, state_path, port):
    state = load_json(state_path)
    api = api_for(url, state)
    _, project = api.call("POST", "/api/v1/projects", {"name": "bench-deploy"})
    services = {
        # env name -> (service name, replicas, published port)
        "single": ("web", 1, port),
        "fan": ("fan", 20, None),
        "one": ("one", 1, None),
        "idle": (None, 0, None),
    }
    state["env"], state["service"] = {}, {}
    for env_name, (svc, replicas, p) in services.items():
        _, env = api.call(
            "POST", f"/api/v1/projects/{project['id']}/environments", {"name": env_name, "protected": False}
        )
        state["env"][env_name] = env["id"]
        if svc:
            _, s = api.call(
                "POST", f"/api/v1/environments/{env['id']}/services", {"name": svc, "spec": web_spec(replicas, p)}
            )
            state["service"][env_name] = s["id"]
    state["port"] = port
    save_json(state_path, state)


def hosts(url, state_path, env_key, name, n, out):
    state = load_json(state_path)
    api = api_for(url, state)
    envs = [] if env_key == "none" else [state["env"][env_key]]
    lines = []
    for i in range(n):
        _, h = api.call("POST", "/api/v1/hosts", {"name": f"{name}-{i:02d}", "environments": envs})
        _, e = api.call("POST", f"/api/v1/hosts/{h['id']}/enrollment")
        lines.append(f"{h['id']} {e['token']}\n")
    with open(out, "w") as f:
        f.writelines(lines)
    os.chmod(out, 0o600)


def wait_online(url, state_path, hosts_file, timeout):
    state = load_json(state_path)
    api = api_for(url, state)
    with open(hosts_file) as f:
        ids = [line.split()[0] for line in f if line.strip()]
    t0 = time.monotonic()
    pending = set(ids)
    while pending:
        for hid in list(pending):
            _, h = api.call("GET", f"/api/v1/hosts/{hid}")
            if h["status"] == "online":
                pending.discard(hid)
        if not pending:
            break
        if time.monotonic() - t0 > timeout:
            die(f"{len(pending)} of {len(ids)} hosts not online after {timeout} s")
        time.sleep(0.2)
    print(f"{len(ids)} host(s) online after {time.monotonic() - t0:.1f} s", file=sys.stderr)


# ------------------------------------------------------------------ deploys


def post_deploy(api, service_id, image):
    _, d = api.call("POST", f"/api/v1/services/{service_id}/deployments", {"image": image}, expect=(202,))
    return d["id"]


def wait_deploy(api, dep_id, t_post, poll=0.01):
    """Poll until the deployment is final; returns seconds since t_post (monotonic)."""
    while True:
        _, d = api.call("GET", f"/api/v1/deployments/{dep_id}")
        if d["state"] in FINAL:
            took = time.monotonic() - t_post
            if d["state"] != "succeeded":
                steps = "; ".join(str(s.get("message", s)) for s in d.get("steps", [])[-5:])
                die(f"deployment {dep_id} ended {d['state']}: {d.get('reason')} [{steps}]")
            return took
        if time.monotonic() - t_post > DEPLOY_TIMEOUT_S:
            die(f"deployment {dep_id} not final after {DEPLOY_TIMEOUT_S:.0f} s (state {d['state']})")
        time.sleep(poll)


def deploy_once(api, service_id, image):
    t0 = time.monotonic()
    dep = post_deploy(api, service_id, image)
    return wait_deploy(api, dep, t0)


def first(url, state_path, service, version):
    state = load_json(state_path)
    api = api_for(url, state)
    took = deploy_once(api, state["service"][service], IMAGES[version])
    print(f"first deploy of {service} ({version}): {took:.2f} s", file=sys.stderr)


def get_root(port, timeout=1.0, why=None):
    """Body of GET http://127.0.0.1:PORT/ on a new connection, or None (reason into `why`)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", "/")
        r = c.getresponse()
        body = r.read().decode(errors="replace").strip()
        if r.status != 200 and why is not None:
            why.append(f"HTTP {r.status}")
        return body if r.status == 200 else None
    except (OSError, http.client.HTTPException) as e:
        if why is not None:
            why.append(type(e).__name__)
        return None
    finally:
        c.close()


def running_containers(service_id, status="running"):
    """Ids of this service's containers in `status`, from the Docker Engine itself."""
    env = dict(os.environ)
    env.setdefault("DOCKER_HOST", os.environ.get("SLIPWAY_TEST_DOCKER_HOST", ""))
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=slipway.service_id={service_id}",
         "--filter", f"status={status}"],
        capture_output=True, text=True, timeout=30, env=env, check=True)
    return out.stdout.split()


def settle(service_id, replicas=1, timeout=120):
    """Waits until the engine is quiet for the service: only its serving replicas run (the
    previous release's containers are stopped) and nothing is being removed."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if (len(running_containers(service_id)) == replicas
                and not running_containers(service_id, "removing")):
            time.sleep(0.2)
            return time.monotonic() - t0
        time.sleep(0.05)
    die(f"service {service_id} did not settle within {timeout} s")


def overhead(url, state_path, port, n, out, settled):
    """N deploys alternating from the version being served: POST → first GET / with the
    new version. `settled`: each deploy starts once the previous one's old container is
    stopped (as the bare start, which runs on a quiet engine); else back to back, right
    after the previous deploy succeeded (its clean-up then overlaps the next deploy)."""
    state = load_json(state_path)
    api = api_for(url, state)
    service_id = state["service"]["single"]
    current = get_root(port)
    if current not in IMAGES:
        die(f"127.0.0.1:{port}/ serves {current!r}, expected v1 or v2")
    runs = []
    for i in range(n):
        waited = settle(service_id) if settled else 0.0
        new = "v2" if current == "v1" else "v1"
        t0 = time.monotonic()
        dep = post_deploy(api, service_id, IMAGES[new])
        while True:
            if get_root(port) == new:
                serving = time.monotonic() - t0
                break
            if time.monotonic() - t0 > DEPLOY_TIMEOUT_S:
                die(f"{new} not served within {DEPLOY_TIMEOUT_S:.0f} s")
            time.sleep(0.005)
        done = wait_deploy(api, dep, t0)
        runs.append({"to": new, "serving_s": round(serving, 4), "succeeded_s": round(done, 4),
                     "settle_wait_s": round(waited, 3)})
        print(f"  deploy {i + 1}/{n} → {new}: serving after {serving * 1000:.0f} ms, "
              f"succeeded after {done * 1000:.0f} ms (settled for {waited * 1000:.0f} ms first)",
              file=sys.stderr)
        current = new
    save_json(out, {
        "settled": settled,
        "runs": runs,
        "median_serving_ms": statistics.median(r["serving_s"] for r in runs) * 1000,
        "median_succeeded_ms": statistics.median(r["succeeded_s"] for r in runs) * 1000,
    })


class Watcher(threading.Thread):
    """Polls GET / every 10 ms (new connection, 1 s timeout) and counts version switches
    and failed polls (by reason)."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port, self.stop = port, threading.Event()
        self.last, self.switches, self.polls, self.failed = None, 0, 0, 0
        self.reasons = {}

    def run(self):
        while not self.stop.is_set():
            why = []
            v = get_root(self.port, why=why)
            self.polls += 1
            if v is None:
                self.failed += 1
                for r in why:
                    self.reasons[r] = self.reasons.get(r, 0) + 1
            elif v != self.last:
                if self.last is not None:
                    self.switches += 1
                self.last = v
            time.sleep(0.01)


def parse_wrk_text(text):
    out = {"non2xx3xx": 0, "socket": {"connect": 0, "read": 0, "write": 0, "timeout": 0}}
    m = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    if m:
        out["non2xx3xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        out["socket"] = dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups())))
    m = re.search(r"(\d+) requests in", text)
    out["requests"] = int(m.group(1)) if m else None
    return out


def zero(url, state_path, port, n, out):
    """N back-to-back deploys (alternating) while wrk -t2 -c16 hammers the published port."""
    state = load_json(state_path)
    api = api_for(url, state)
    res_dir = os.path.dirname(os.path.abspath(out))
    # wrk's -d is only an upper bound: deploys under load take several times longer than
    # the idle single deploy of the overhead phase, so give it a wide margin and stop wrk
    # with SIGINT (it still prints its summary and runs the Lua done()) once the last
    # deploy succeeded and its old container drained.
    ov = load_json(os.path.join(res_dir, "overhead.json"))
    single = ov["median_succeeded_ms"] / 1000
    duration = max(120, int(single * n * 8) + 30)
    current = get_root(port)
    if current not in IMAGES:
        die(f"127.0.0.1:{port}/ serves {current!r}, expected v1 or v2")
    wrk_json = os.path.join(res_dir, "wrk-zero.json")
    env = dict(os.environ, BENCH_OUT=wrk_json, BENCH_TOKEN="")
    lua = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wrk.lua")
    cmd = ["wrk", "-t2", "-c16", f"-d{duration}s", "--timeout", "5s", "-s", lua, f"http://127.0.0.1:{port}/"]
    print(f"  {' '.join(cmd)} while {n} deploys run", file=sys.stderr)
    watcher = Watcher(port)
    with open(os.path.join(res_dir, "wrk-zero.txt"), "w") as txt:
        t_wrk = time.monotonic()
        wrk = subprocess.Popen(cmd, stdout=txt, stderr=subprocess.STDOUT, env=env)
        try:
            time.sleep(1.0)  # wrk connected and at full rate before the first deploy
            watcher.start()
            t_start = time.monotonic()
            runs = []
            for i in range(n):
                new = "v2" if current == "v1" else "v1"
                took = deploy_once(api, state["service"]["single"], IMAGES[new])
                runs.append({"to": new, "succeeded_s": round(took, 3)})
                print(f"  deploy {i + 1}/{n} → {new}: {took:.2f} s", file=sys.stderr)
                current = new
            t_end = time.monotonic()
            time.sleep(1.0)  # the last switch's drain
            watcher.stop.set()
            watcher.join(5)
            wrk_alive = wrk.poll() is None  # still loading when the deploys ended
            wrk.send_signal(signal.SIGINT)
            wrk.wait(timeout=30)
            t_wrk_end = time.monotonic()
        finally:
            if wrk.poll() is None:
                wrk.send_signal(signal.SIGTERM)
                wrk.wait(10)
    with open(os.path.join(res_dir, "wrk-zero.txt")) as f:
        text = parse_wrk_text(f.read())
    w = load_json(wrk_json)
    inside = wrk_alive and (t_end - t_wrk) <= duration
    save_json(out, {
        "deploys": n,
        "runs": runs,
        "deploys_s": round(t_end - t_start, 2),
        "wrk_duration_s": duration,
        "wrk_ran_s": round(t_wrk_end - t_wrk, 2),
        "deploys_inside_wrk_window": inside,
        "wrk": w,
        "wrk_text": text,
        "watcher": {"polls": watcher.polls, "failed": watcher.failed, "switches": watcher.switches,
                    "failed_by_reason": watcher.reasons},
    })
    if not inside:
        print(f"  WARNING: deploys ended {t_end - t_wrk:.1f} s after wrk started (window {duration} s)",
              file=sys.stderr)


def fanout(url, state_path, n, out):
    """Interleaved runs of the 20-host and the 1-host deploy, each started once the engine
    has settled from the previous one (as the bare-start reference, which starts on a quiet
    engine)."""
    state = load_json(state_path)
    api = api_for(url, state)
    res = {"fan": [], "one": []}
    current = {"fan": "v1", "one": "v1"}  # both deployed once with v1 before
    replicas = {}
    for svc in ("fan", "one"):
        _, body = api.call("GET", f"/api/v1/services/{state['service'][svc]}")
        replicas[svc] = body["spec"]["replicas"]
    for i in range(n):
        for svc in ("fan", "one"):
            new = "v2" if current[svc] == "v1" else "v1"
            for other in ("fan", "one"):
                settle(state["service"][other], replicas[other])
            took = deploy_once(api, state["service"][svc], IMAGES[new])
            res[svc].append(round(took, 3))
            current[svc] = new
            print(f"  {svc} run {i + 1}/{n} → {new}: {took:.2f} s", file=sys.stderr)
    res["median_fan_s"] = statistics.median(res["fan"])
    res["median_one_s"] = statistics.median(res["one"])
    save_json(out, res)


# ------------------------------------------------------------------ report


def load(d, name):
    p = os.path.join(d, name)
    return load_json(p) if os.path.exists(p) else None


def mib(kb):
    return f"{kb / 1024:.1f} MiB"


def report(d, out):
    meta = load(d, "meta.json") or {}
    z, ov, bare = load(d, "zero.json"), load(d, "overhead.json"), load(d, "bare.json")
    b2b = load(d, "overhead-b2b.json")
    fan, rss = load(d, "fanout.json"), load(d, "rss.json")
    lines = [
        f"# Slipway deploy-engine benchmark — {meta.get('date', '?')}",
        "",
        f"Machine: {meta.get('machine', '?')}. Commit `{meta.get('commit', '?')}`. "
        f"Server: release build, SQLite, `SLIPWAY_LOG={meta.get('log', '?')}`; agents: `slipway agent` "
        f"(release), Docker Engine {meta.get('docker', '?')}, all on this machine. "
        f"Load average (1/5/15 min): {meta.get('load', '?')}.",
        "",
        "| metric | value | goal | |",
        "|---|---|---|---|",
    ]
    if z:
        w, t = z["wrk"], z["wrk_text"]
        e = w["errors"]
        sock = e["connect"] + e["read"] + e["write"] + e["timeout"]
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(z["watcher"].get("failed_by_reason", {}).items()))
        failed = sock + e["status"]
        lines += [
            f"| requests failed during {z['deploys']} back-to-back deploys (wrk -t2 -c16 on the "
            f"published port for {z['wrk_ran_s']:.0f} s) | **{failed}** of {w['requests']:,} "
            f"(non-2xx/3xx {e['status']}; socket errors connect {e['connect']}, read {e['read']}, "
            f"write {e['write']}, timeout {e['timeout']}) | 0 | {ok(failed == 0)} |",
            f"| … version switches seen by a 10 ms poller / deploys | {z['watcher']['switches']} / {z['deploys']} "
            f"({z['watcher']['failed']} failed polls of {z['watcher']['polls']}"
            f"{': ' + reasons if reasons else ''}) | | |",
            f"| … the {z['deploys']} deploys took / all inside the wrk window | {z['deploys_s']:.1f} s / "
            f"{'yes' if z['deploys_inside_wrk_window'] else 'NO'} | | |",
            f"| … wrk latency p50 / p99 / max | {w['latency_us']['p50'] / 1000:.2f} / "
            f"{w['latency_us']['p99'] / 1000:.2f} / {w['latency_us']['max'] / 1000:.1f} ms | | |",
        ]
        if t.get("requests") is not None and t["non2xx3xx"] != e["status"]:
            lines.append(f"| … wrk text summary: Non-2xx or 3xx | {t['non2xx3xx']} | | |")
    if ov:
        runs = ", ".join(f"{r['serving_s'] * 1000:.0f}" for r in ov["runs"])
        lines.append(
            f"| deploy overhead: POST → first `GET /` with the new version, each on a settled host, "
            f"median of {len(ov['runs'])} | {ov['median_serving_ms']:.0f} ms (runs: {runs}) | | |"
        )
        lines.append(f"| … POST → deployment `succeeded`, median | {ov['median_succeeded_ms']:.0f} ms | | |")
    if b2b:
        runs = ", ".join(f"{r['serving_s'] * 1000:.0f}" for r in b2b["runs"])
        lines.append(
            f"| … back to back (each POST right after the previous `succeeded`, its clean-up still "
            f"running), median of {len(b2b['runs'])} | {b2b['median_serving_ms']:.0f} ms (runs: {runs}) | | |"
        )
    if bare:
        runs = ", ".join(f"{x:.0f}" for x in bare["healthy_ms"])
        lines.append(
            f"| bare Docker (bollard): create → start → `/healthz` 200, median of {bare['runs']} "
            f"| {bare['median_healthy_ms']:.0f} ms (runs: {runs}) | | |"
        )
    if ov and bare and bare["median_healthy_ms"] > 0:
        r = ov["median_serving_ms"] / bare["median_healthy_ms"]
        lines.append(f"| deploy (settled) ÷ bare start | **{r:.2f}** | ≤ 1.25 | {ok(r <= 1.25)} |")
        if b2b:
            lines.append(f"| deploy (back to back) ÷ bare start | {b2b['median_serving_ms'] / bare['median_healthy_ms']:.2f} | | |")
    if fan:
        lines += [
            f"| fan-out: 20 agents, replicas 20, POST → succeeded, each on a settled engine, median of {len(fan['fan'])} "
            f"| {fan['median_fan_s']:.2f} s (runs: {', '.join(f'{x:.2f}' for x in fan['fan'])}) | | |",
            f"| … 1 agent, replicas 1, median of {len(fan['one'])} "
            f"| {fan['median_one_s']:.2f} s (runs: {', '.join(f'{x:.2f}' for x in fan['one'])}) | | |",
        ]
        if fan["median_one_s"] > 0:
            r = fan["median_fan_s"] / fan["median_one_s"]
            lines.append(f"| 20 agents ÷ 1 agent | **{r:.2f}×** | ≤ 2× | {ok(r <= 2)} |")
    bare_fan, bare_one = load(d, "bare-fan.json"), load(d, "bare-one.json")
    if bare_fan and bare_one:
        n = bare_fan["concurrent"]
        lines += [
            f"| reference: {n} bare starts at once on the shared engine (bollard, create → start → "
            f"all `/healthz` 200), median of {bare_fan['runs']} | {bare_fan['median_all_healthy_ms'] / 1000:.2f} s "
            f"(runs: {', '.join(f'{x / 1000:.2f}' for x in bare_fan['all_healthy_ms'])}) | | |",
            f"| … 1 bare start, median of {bare_one['runs']} (right after) | "
            f"{bare_one['median_all_healthy_ms'] / 1000:.2f} s "
            f"(runs: {', '.join(f'{x / 1000:.2f}' for x in bare_one['all_healthy_ms'])}) | | |",
        ]
        if bare_one["median_all_healthy_ms"] > 0:
            rb = bare_fan["median_all_healthy_ms"] / bare_one["median_all_healthy_ms"]
            lines.append(f"| {n} bare starts at once ÷ 1 (the shared engine's own fan-out ratio) "
                         f"| **{rb:.2f}×** | | |")
        if fan and bare_fan["median_all_healthy_ms"] > 0:
            rf = fan["median_fan_s"] * 1000 / bare_fan["median_all_healthy_ms"]
            lines.append(f"| fan-out deploy ÷ {n} bare starts at once | **{rf:.2f}** | | |")
    if rss:
        lines += [
            f"| server RSS idle after start | {mib(rss['server_idle_kb'])} | | |",
            f"| agent RSS idle (connected, nothing deployed) | {mib(rss['agent_idle_kb'])} | | |",
            f"| server RSS with {rss['agents'] + 1} agents connected ({rss['agents']} idle `--no-proxy` "
            f"+ the first one) | {mib(rss['server_50_kb'])} | | |",
            f"| … median agent RSS among them (min / max) | {mib(rss['agent_median_kb'])} "
            f"({mib(rss['agent_min_kb'])} / {mib(rss['agent_max_kb'])}) | | |",
        ]
    lines.append("")
    text = "\n".join(lines)
    with open(out, "w") as f:
        f.write(text)
    print(text)


def main():
    if len(sys.argv) < 2:
        die(__doc__)
    cmd, a = sys.argv[1], sys.argv[2:]
    if cmd != "report" and a:
        check_loopback(a[0])
    if cmd == "setup" and len(a) == 2:
        setup(a[0], a[1])
    elif cmd == "scaffold" and len(a) == 3:
        scaffold(a[0], a[1], int(a[2]))
    elif cmd == "hosts" and len(a) == 6:
        hosts(a[0], a[1], a[2], a[3], int(a[4]), a[5])
    elif cmd == "wait-online" and len(a) == 4:
        wait_online(a[0], a[1], a[2], float(a[3]))
    elif cmd == "first" and len(a) == 4:
        first(a[0], a[1], a[2], a[3])
    elif cmd == "overhead" and len(a) == 6 and a[5] in ("settled", "back-to-back"):
        overhead(a[0], a[1], int(a[2]), int(a[3]), a[4], a[5] == "settled")
    elif cmd == "zero" and len(a) == 5:
        zero(a[0], a[1], int(a[2]), int(a[3]), a[4])
    elif cmd == "fanout" and len(a) == 4:
        fanout(a[0], a[1], int(a[2]), a[3])
    elif cmd == "report" and len(a) == 2:
        report(a[0], a[1])
    else:
        die(__doc__)


if __name__ == "__main__":
    main()

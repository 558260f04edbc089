#!/usr/bin/env python3
"""Stack benchmark helpers for bench/stack/run (Python standard library only).

The stack: nginx -> api -> postgres + redis (scripts/test-images/stack/), four containers.

  stack.py byhand RUNS OUT.json
      The baseline: the same four containers started by hand through the Docker Engine
      API (plain HTTP on its unix socket) in dependency order, each waited for until
      healthy (pg_isready / redis-cli ping by exec, HTTP for the api and nginx), on a
      fresh network and volume each run. Timed from the first API call to nginx
      answering /health through to the api; median over RUNS.
  stack.py scaffold URL STATE.json RUNS PORT_BASE
      Slipway side, untimed: admin token (bench/deploy.py setup), a project, RUNS
      environments each with the four services (same images, env, health checks,
      depends_on), one host assigned to all of them; its enrollment token into
      STATE.json (hosts file: STATE.json.hosts).
  stack.py slipway URL STATE.json OUT.json
      Per environment: POST /api/v1/environments/{id}/deployments ({}), then poll
      GET /api/v1/deployments/{id} of each deployment it started until all succeeded;
      also when nginx first answered /health on the published port. Median over the
      environments (one fresh environment per run: the first deploy of a whole stack,
      like the by-hand start from nothing).
  stack.py cleanup STATE.json
      Removes what the Slipway side left on the engine: networks labelled with one of
      the environments' ids, the postgres volumes (containers: bench/stack/run removes
      them by the agent's container prefix first).
  stack.py report RESULTS_DIR OUT.md
      Markdown table of byhand.json (and slipway.json when present) with the ratio.

Only loopback addresses and the local Docker socket are contacted. Knobs: BENCH_POLL_MS
(25: how often the by-hand run probes health, the agent's HTTP probe cadence),
BENCH_STACK_PARALLEL=1 (by hand: start postgres and redis at once; default one by one),
BENCH_DEPLOY_TIMEOUT (300 s), DOCKER_HOST / SLIPWAY_TEST_DOCKER_HOST.
"""
import http.client
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the tree
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from bench import Api, die  # noqa: E402

POLL_S = float(os.environ.get("BENCH_POLL_MS", "25")) / 1000
DEPLOY_TIMEOUT_S = float(os.environ.get("BENCH_DEPLOY_TIMEOUT", "300"))
PARALLEL = os.environ.get("BENCH_STACK_PARALLEL", "0") == "1"
FINAL = {"succeeded", "failed", "rolled_back", "cancelled", "rejected"}

DB_PASSWORD = "bench-stack-pw"
NGINX_CONF = """events { worker_connections 1024; }
http {
    upstream api { server api:8080; }
    server {
        listen 80;
        location / { proxy_pass http://api; }
    }
}
"""
IMAGES = {
    "postgres": "slipway-test/postgres:15",
    "redis": "slipway-test/redis:7",
    "api": "slipway-test/api:v1",
    "nginx": "slipway-test/nginx:1",
}
ENV = {
    "postgres": {"POSTGRES_USER": "app", "POSTGRES_PASSWORD": DB_PASSWORD, "POSTGRES_DB": "app"},
    "redis": {},
    "api": {"DATABASE_URL": f"postgresql://app:{DB_PASSWORD}@postgres:5432/app", "REDIS_URL": "redis://redis:6379"},
    "nginx": {},
}
PG_READY = ["pg_isready", "-U", "app", "-q"]
REDIS_PING = ["redis-cli", "ping"]
# Dependency levels: each level only needs the ones before it.
LEVELS = [["postgres", "redis"], ["api"], ["nginx"]]


# ------------------------------------------------------------------ Docker Engine API


def docker_socket():
    host = os.environ.get("DOCKER_HOST") or os.environ.get("SLIPWAY_TEST_DOCKER_HOST") or "unix:///var/run/docker.sock"
    if not host.startswith("unix://"):
        die(f"only a unix socket Docker host is supported, got {host}")
    return host[len("unix://"):]


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=120):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.path)
        self.sock = s


class Docker:
    """The few Engine API calls the baseline needs; a new connection per call (cheap on a
    unix socket, and exec start streams until the process ends)."""

    def __init__(self, sock):
        self.sock = sock

    def call(self, method, path, body=None, expect=(200, 201, 204)):
        c = UnixConnection(self.sock)
        try:
            data = None if body is None else json.dumps(body).encode()
            headers = {"Content-Type": "application/json"} if data is not None else {}
            c.request(method, path, body=data, headers=headers)
            r = c.getresponse()
            raw = r.read()
        finally:
            c.close()
        if r.status not in expect:
            die(f"docker {method} {path} -> {r.status}: {raw[:300]!r}")
        ctype = r.getheader("Content-Type") or ""
        return json.loads(raw) if raw and "json" in ctype else raw

    def exec_output(self, cid, cmd):
        """(exit code, combined output) of `cmd` run in container `cid`."""
        e = self.call("POST", f"/containers/{cid}/exec",
                      {"Cmd": cmd, "AttachStdout": True, "AttachStderr": True, "Tty": False})
        out = self.call("POST", f"/exec/{e['Id']}/start", {"Detach": False, "Tty": False})
        code = self.call("GET", f"/exec/{e['Id']}/json")["ExitCode"]
        return code, out if isinstance(out, bytes) else b""


def http_ok(port, path="/health"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        return r.status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        c.close()


def wait_until(what, check, timeout=120):
    t0 = time.monotonic()
    while True:
        if check():
            return
        if time.monotonic() - t0 > timeout:
            die(f"{what} not healthy within {timeout} s")
        time.sleep(POLL_S)


class ByHand:
    """One run: network, volume, four containers in dependency order, each waited for."""

    def __init__(self, docker, tag, conf_dir):
        self.d = docker
        self.tag = tag
        self.net = f"{tag}-net"
        self.volume = f"{tag}-pgdata"
        self.conf = os.path.join(conf_dir, "nginx.conf")
        self.ids = {}
        self.ready_at = {}

    def create_start(self, name):
        body = {
            "Image": IMAGES[name],
            "Env": [f"{k}={v}" for k, v in ENV[name].items()],
            "Labels": {"slipway.bench": "stack"},
            "HostConfig": {"NetworkMode": self.net},
            "NetworkingConfig": {"EndpointsConfig": {self.net: {"Aliases": [name]}}},
        }
        if name == "postgres":
            body["HostConfig"]["Binds"] = [f"{self.volume}:/var/lib/postgresql/data"]
        if name in ("api", "nginx"):
            port = "8080/tcp" if name == "api" else "80/tcp"
            body["ExposedPorts"] = {port: {}}
            body["HostConfig"]["PortBindings"] = {port: [{"HostIp": "127.0.0.1", "HostPort": ""}]}
        if name == "nginx":
            body["HostConfig"]["Binds"] = [f"{self.conf}:/etc/nginx/nginx.conf:ro"]
        c = self.d.call("POST", f"/containers/create?name={self.tag}-{name}", body)
        self.ids[name] = c["Id"]
        self.d.call("POST", f"/containers/{c['Id']}/start")

    def host_port(self, name):
        info = self.d.call("GET", f"/containers/{self.ids[name]}/json")
        for bindings in (info["NetworkSettings"]["Ports"] or {}).values():
            for b in bindings or []:
                if b.get("HostIp") in ("127.0.0.1", "0.0.0.0", ""):
                    return int(b["HostPort"])
        die(f"{name}: no published port")

    def wait_healthy(self, name):
        cid = self.ids[name]
        if name == "postgres":
            wait_until(name, lambda: self.d.exec_output(cid, PG_READY)[0] == 0)
        elif name == "redis":
            wait_until(name, lambda: b"PONG" in self.d.exec_output(cid, REDIS_PING)[1])
        else:
            port = self.host_port(name)
            wait_until(name, lambda: http_ok(port))

    def service(self, name, t0):
        self.create_start(name)
        self.wait_healthy(name)
        self.ready_at[name] = time.monotonic() - t0

    def run(self):
        with open(self.conf, "w") as f:
            f.write(NGINX_CONF)
        t0 = time.monotonic()
        self.d.call("POST", "/networks/create",
                    {"Name": self.net, "Driver": "bridge", "Labels": {"slipway.bench": "stack"}})
        self.d.call("POST", "/volumes/create", {"Name": self.volume, "Labels": {"slipway.bench": "stack"}})
        for level in LEVELS:
            if PARALLEL and len(level) > 1:
                threads = [threading.Thread(target=self.service, args=(n, t0)) for n in level]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                missing = [n for n in level if n not in self.ready_at]
                if missing:
                    die(f"not started: {missing}")
            else:
                for name in level:
                    self.service(name, t0)
        total = time.monotonic() - t0
        return total

    def cleanup(self):
        for cid in self.ids.values():
            self.d.call("DELETE", f"/containers/{cid}?force=true&v=true", expect=(204, 404))
        self.d.call("DELETE", f"/networks/{self.net}", expect=(204, 404))
        self.d.call("DELETE", f"/volumes/{self.volume}", expect=(204, 404))


def byhand(runs, out):
    docker = Docker(docker_socket())
    results = []
    with tempfile.TemporaryDirectory(prefix="slipway-bench-stack.") as conf_dir:
        os.chmod(conf_dir, 0o755)
        for i in range(runs):
            run = ByHand(docker, f"bs{os.getpid()}-{i}", conf_dir)
            try:
                total = run.run()
            finally:
                run.cleanup()
            results.append({"total_s": round(total, 4),
                            "ready_at_s": {k: round(v, 4) for k, v in run.ready_at.items()}})
            steps = ", ".join(f"{k} {v * 1000:.0f}" for k, v in run.ready_at.items())
            print(f"  by hand {i + 1}/{runs}: {total * 1000:.0f} ms (ready at ms: {steps})", file=sys.stderr)
            time.sleep(0.5)
    save_json(out, {
        "runs": results,
        "parallel_first_level": PARALLEL,
        "poll_ms": POLL_S * 1000,
        "median_total_ms": statistics.median(r["total_s"] for r in results) * 1000,
    })


# ------------------------------------------------------------------ Slipway side


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


def health(kind, **kw):
    h = {"kind": kind, "interval_secs": 1, "timeout_secs": 1, "retries": 50}
    h.update(kw)
    return h


def stack_specs(port, volume):
    """The four services as Slipway specs (the same containers as by hand)."""
    return {
        "postgres": {
            "image": IMAGES["postgres"], "env": ENV["postgres"],
            "volumes": [{"source": volume, "target": "/var/lib/postgresql/data"}],
            "health_check": health("exec", command=PG_READY),
        },
        "redis": {
            "image": IMAGES["redis"],
            "health_check": health("exec", command=REDIS_PING),
        },
        "api": {
            "image": IMAGES["api"], "env": ENV["api"],
            "health_check": health("http", path="/health", port=8080),
            "depends_on": {"postgres": "service_healthy", "redis": "service_healthy"},
        },
        "nginx": {
            "image": IMAGES["nginx"],
            "files": [{"target": "/etc/nginx/nginx.conf", "content": NGINX_CONF}],
            "ports": [{"container": 80, "published": port}],
            "health_check": health("http", path="/health", port=80),
            "depends_on": {"api": "service_healthy"},
        },
    }


def scaffold(url, state_path, runs, port_base):
    sys.path.insert(0, os.path.dirname(HERE))
    import deploy  # bench/deploy.py: the admin token

    deploy.setup(url, state_path)
    state = load_json(state_path)
    api = api_for(url, state)
    _, project = api.call("POST", "/api/v1/projects", {"name": f"bench-stack-{os.getpid()}"})
    state["envs"] = []
    for i in range(runs):
        _, env = api.call("POST", f"/api/v1/projects/{project['id']}/environments",
                          {"name": f"stack-{i:02d}", "protected": False})
        port = port_base + i
        services = {}
        volume = f"bench-stack-pg-{os.getpid()}-{i}"
        state.setdefault("volumes", []).append(volume)
        for name, spec in stack_specs(port, volume).items():
            _, svc = api.call("POST", f"/api/v1/environments/{env['id']}/services", {"name": name, "spec": spec})
            services[svc["id"]] = name
        state["envs"].append({"id": env["id"], "port": port, "services": services})
    _, h = api.call("POST", "/api/v1/hosts",
                    {"name": "stack-host", "environments": [e["id"] for e in state["envs"]]})
    _, e = api.call("POST", f"/api/v1/hosts/{h['id']}/enrollment")
    with open(state_path + ".hosts", "w") as f:
        f.write(f"{h['id']} {e['token']}\n")
    os.chmod(state_path + ".hosts", 0o600)
    save_json(state_path, state)


def slipway(url, state_path, out):
    state = load_json(state_path)
    api = api_for(url, state)
    results = []
    for i, env in enumerate(state["envs"]):
        t0 = time.monotonic()
        _, batch = api.call("POST", f"/api/v1/environments/{env['id']}/deployments", {},
                            expect=(200, 201, 202))
        pending = {d["id"] for d in batch["deployments"]}
        if batch.get("unchanged"):
            die(f"environment {env['id']}: services left unchanged on a first deploy: {batch['unchanged']}")
        if len(pending) != 4:
            die(f"environment {env['id']}: {len(pending)} deployments started, expected 4")
        serving = None
        done_at = {}
        while pending:
            now = time.monotonic() - t0
            if serving is None and http_ok(env["port"]):
                serving = now
            for dep in list(pending):
                _, d = api.call("GET", f"/api/v1/deployments/{dep}")
                if d["state"] in FINAL:
                    if d["state"] != "succeeded":
                        steps = "; ".join(str(s.get("message", s)) for s in d.get("steps", [])[-6:])
                        die(f"deployment {dep} ended {d['state']}: {d.get('reason')} [{steps}]")
                    done_at[env["services"].get(d["service_id"], d["service_id"])] = time.monotonic() - t0
                    pending.discard(dep)
            if time.monotonic() - t0 > DEPLOY_TIMEOUT_S:
                die(f"environment {env['id']}: not deployed after {DEPLOY_TIMEOUT_S:.0f} s")
            time.sleep(0.01)
        total = time.monotonic() - t0
        while serving is None:
            if http_ok(env["port"]):
                serving = time.monotonic() - t0
            elif time.monotonic() - t0 > total + 30:
                die(f"nginx of environment {env['id']} not answering /health on {env['port']}")
            else:
                time.sleep(0.01)
        results.append({"total_s": round(total, 4), "serving_s": round(serving, 4),
                        "succeeded_at_s": {k: round(v, 4) for k, v in done_at.items()}})
        print(f"  slipway {i + 1}/{len(state['envs'])}: all succeeded after {total * 1000:.0f} ms, "
              f"nginx serving after {serving * 1000:.0f} ms", file=sys.stderr)
        time.sleep(0.5)
    save_json(out, {
        "runs": results,
        "median_total_ms": statistics.median(r["total_s"] for r in results) * 1000,
        "median_serving_ms": statistics.median(r["serving_s"] for r in results) * 1000,
    })


def cleanup(state_path):
    state = load_json(state_path)
    docker = Docker(docker_socket())
    env_ids = {e["id"] for e in state.get("envs", [])}
    for net in docker.call("GET", "/networks"):
        if env_ids & set((net.get("Labels") or {}).values()):
            docker.call("DELETE", f"/networks/{net['Id']}", expect=(204, 403, 404, 409))
    volumes = docker.call("GET", "/volumes").get("Volumes") or []
    for v in volumes:
        if any(name in v["Name"] for name in state.get("volumes", [])):
            docker.call("DELETE", f"/volumes/{v['Name']}?force=true", expect=(204, 404, 409))


# ------------------------------------------------------------------ report


def report(d, out):
    bh = load_json(os.path.join(d, "byhand.json"))
    sw_path = os.path.join(d, "slipway.json")
    sw = load_json(sw_path) if os.path.exists(sw_path) else None
    meta_path = os.path.join(d, "meta.json")
    meta = load_json(meta_path) if os.path.exists(meta_path) else {}
    def ms_list(runs, key):
        return ", ".join(f"{r[key] * 1000:.0f}" for r in runs)

    how = "postgres ∥ redis" if bh["parallel_first_level"] else "one by one"
    lines = [
        "# Stack deploy: nginx → api → postgres + redis",
        "",
        f"{meta.get('date', '')} · commit {meta.get('commit', '?')} · {meta.get('machine', '')} · "
        f"Docker {meta.get('docker', '?')} · load {meta.get('load', '?')}",
        "",
        "| what | median | runs (ms) |",
        "|---|---|---|",
        f"| by hand (Engine API, dependency order, each healthy; {how}, poll {bh['poll_ms']:.0f} ms) "
        f"| **{bh['median_total_ms']:.0f} ms** | {ms_list(bh['runs'], 'total_s')} |",
    ]
    if sw:
        lines.append(f"| Slipway: Deploy environment, POST → all 4 deployments succeeded "
                     f"| **{sw['median_total_ms']:.0f} ms** | {ms_list(sw['runs'], 'total_s')} |")
        lines.append(f"| Slipway: POST → nginx answers /health | {sw['median_serving_ms']:.0f} ms "
                     f"| {ms_list(sw['runs'], 'serving_s')} |")
        ratio = sw["median_total_ms"] / bh["median_total_ms"]
        verdict = "✅" if ratio <= 1.3 else "❌"
        lines += ["", f"Ratio Slipway ÷ by hand: **{ratio:.2f}** (goal ≤ 1.3 {verdict})"]
    else:
        lines += ["", "Slipway side not measured (`bench/stack/run slipway` or `both`)."]
    step_names = ["postgres", "redis", "api", "nginx"]
    lines += ["", "By hand, median time since start at which each was healthy: " + ", ".join(
        f"{n} {statistics.median(r['ready_at_s'][n] for r in bh['runs']) * 1000:.0f} ms" for n in step_names)]
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def main():
    a = sys.argv[1:]
    if a[:1] == ["byhand"] and len(a) == 3:
        byhand(int(a[1]), a[2])
    elif a[:1] == ["scaffold"] and len(a) == 5:
        scaffold(a[1], a[2], int(a[3]), int(a[4]))
    elif a[:1] == ["slipway"] and len(a) == 4:
        slipway(a[1], a[2], a[3])
    elif a[:1] == ["cleanup"] and len(a) == 2:
        cleanup(a[1])
    elif a[:1] == ["report"] and len(a) == 3:
        report(a[1], a[2])
    else:
        die(__doc__)


if __name__ == "__main__":
    main()

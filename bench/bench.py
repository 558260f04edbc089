#!/usr/bin/env python3
"""Helpers for bench/run (Python standard library only).

  bench.py seed BASE_URL N OUT.json        setup admin, API token, project, env, N services
  bench.py ttfr APP_URL OUT.json           time to first render of /login in headless Chromium
  bench.py report RESULTS_DIR OUT.md       markdown table from the JSON files of one run

Only loopback addresses are ever contacted.
"""
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request


def die(msg):
    print(f"bench.py: {msg}", file=sys.stderr)
    sys.exit(1)


def check_loopback(url):
    host = urllib.parse.urlsplit(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        die(f"refusing non-loopback address {url}")


# ------------------------------------------------------------------ seeding


class Api:
    """Keep-alive JSON client for the Slipway API."""

    def __init__(self, base):
        check_loopback(base)
        u = urllib.parse.urlsplit(base)
        self.conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=30)
        self.headers = {}
        self.last_used = time.monotonic()

    def call(self, method, path, body=None, expect=(200, 201)):
        # The server closes keep-alive connections idle for 5 s; start afresh
        # well before that rather than race it (a POST must not be re-sent).
        if time.monotonic() - self.last_used > 2:
            self.conn.close()
        data = None if body is None else json.dumps(body).encode()
        headers = dict(self.headers)
        if data is not None:
            headers["Content-Type"] = "application/json"
        self.conn.request(method, path, body=data, headers=headers)
        resp = self.conn.getresponse()
        raw = resp.read()
        self.last_used = time.monotonic()
        if resp.status not in expect:
            die(f"{method} {path} -> {resp.status}: {raw[:500]!r}")
        return resp, (json.loads(raw) if raw else None)


def seed(base, n, out):
    api = Api(base)
    t0 = time.monotonic()
    resp, me = api.call(
        "POST", "/api/v1/setup", {"username": "bench-admin", "password": "bench-password-1234"}
    )
    cookie = None
    for name, value in resp.getheaders():
        if name.lower() == "set-cookie" and value.startswith("slipway_session="):
            cookie = value.split(";", 1)[0]
    if not cookie or not me.get("csrf_token"):
        die(f"setup gave no session cookie / csrf_token: {me}")

    api.headers = {"Cookie": cookie, "X-CSRF-Token": me["csrf_token"]}
    _, created = api.call(
        "POST", "/api/v1/tokens", {"name": "bench", "role": "admin", "environments": []}
    )
    secret = created["secret"]

    api.headers = {"Authorization": f"Bearer {secret}"}
    _, project = api.call("POST", "/api/v1/projects", {"name": "bench", "description": "benchmark"})
    _, env = api.call(
        "POST",
        f"/api/v1/projects/{project['id']}/environments",
        {"name": "production", "protected": False},
    )
    env_id = env["id"]
    for i in range(n):
        spec = {
            "image": f"registry.example.com/bench/app-{i % 37}:1.{i % 10}.0",
            "command": ["/app", "--port", "8080"],
            "ports": [{"container": 8080, "published": 20000 + i}],
            "env": {"LOG_LEVEL": "info", "SERVICE_INDEX": str(i)},
            "health_check": {"path": "/health", "port": 8080},
            "replicas": 1 + i % 3,
            "resources": {"cpus": 0.5, "memory_mb": 256},
        }
        api.call("POST", f"/api/v1/environments/{env_id}/services", {"name": f"svc-{i:04d}", "spec": spec})
    _, page = api.call("GET", f"/api/v1/environments/{env_id}/services?limit=50")
    if page.get("total") != n or len(page.get("items", [])) != min(n, 50):
        die(f"unexpected list page: total={page.get('total')} items={len(page.get('items', []))}")
    took = time.monotonic() - t0
    body = json.dumps(page).encode()
    result = {
        "env_id": env_id,
        "token": secret,
        "services": n,
        "seed_seconds": round(took, 2),
        "page_bytes": len(body),
    }
    with open(out, "w") as f:
        json.dump(result, f)
    print(f"seeded {n} services in {took:.1f}s (one page of 50 = {len(body)} bytes)", file=sys.stderr)


# ------------------------------------------------------------------ WebDriver

OBSERVER = r"""
(() => {
  const sel = '[data-test="login-form"]';
  const mark = () => {
    if (window.__slipwayDom === undefined && document.querySelector(sel)) {
      window.__slipwayDom = performance.now();
      requestAnimationFrame(() => { window.__slipwayFrame = performance.now(); });
      return true;
    }
    return false;
  };
  new MutationObserver((_, obs) => { if (mark()) obs.disconnect(); })
    .observe(document, { childList: true, subtree: true });
})();
"""

PROBE = r"""
const sel = '[data-test="login-form"]';
const found = !!document.querySelector(sel);
const nav = performance.getEntriesByType('navigation')[0];
const fcp = performance.getEntriesByName('first-contentful-paint')[0];
const res = performance.getEntriesByType('resource').filter(r => /\.(wasm|js)$/.test(r.name));
return {
  found: found,
  now: performance.now(),
  dom: window.__slipwayDom === undefined ? null : window.__slipwayDom,
  frame: window.__slipwayFrame === undefined ? null : window.__slipwayFrame,
  dcl: nav ? nav.domContentLoadedEventEnd : null,
  load: nav && nav.loadEventEnd > 0 ? nav.loadEventEnd : null,
  fcp: fcp ? fcp.startTime : null,
  wasm_end: res.length ? Math.max(...res.map(r => r.responseEnd)) : null,
};
"""


class WebDriver:
    def __init__(self, base):
        check_loopback(base)
        self.base = base.rstrip("/")

    def req(self, method, path, body=None, timeout=60):
        data = None if body is None else json.dumps(body).encode()
        r = urllib.request.Request(
            self.base + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(r, timeout=timeout) as resp:
                return json.loads(resp.read() or b"{}").get("value")
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"{method} {path}: {e.code} {e.read()[:400]!r}") from None


def ttfr(app_url, out):
    check_loopback(app_url)
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    chromedriver = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
    runs = int(os.environ.get("BENCH_TTFR_RUNS", "5"))
    port = int(os.environ.get("BENCH_CHROMEDRIVER_PORT", "0")) or free_port()
    log = open(os.path.join(os.path.dirname(out), "chromedriver.log"), "w")
    proc = subprocess.Popen(
        [chromedriver, f"--port={port}", "--allowed-ips=127.0.0.1"], stdout=log, stderr=log
    )
    wd = WebDriver(f"http://127.0.0.1:{port}")
    samples = []
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if wd.req("GET", "/status", timeout=2).get("ready"):
                    break
            except Exception:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                die("chromedriver did not start")
            time.sleep(0.1)
        for i in range(runs):
            samples.append(one_run(wd, chromium, app_url))
            s = samples[-1]
            print(
                f"  run {i + 1}: first render {s['ttfr_ms']:.0f} ms "
                f"(dom {s['dom']}, fcp {s['fcp']}, dcl {s['dcl']})",
                file=sys.stderr,
            )
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    result = {
        "runs": samples,
        "median_ms": statistics.median(s["ttfr_ms"] for s in samples),
        "median_fcp_ms": median_or_none([s["fcp"] for s in samples]),
        "median_dcl_ms": median_or_none([s["dcl"] for s in samples]),
        "chromium": chromium_version(chromium),
    }
    with open(out, "w") as f:
        json.dump(result, f, indent=1)


def one_run(wd, chromium, app_url):
    profile = tempfile.mkdtemp(prefix="slipway-bench-chromium-")
    caps = {
        "capabilities": {
            "alwaysMatch": {
                "browserName": "chrome",
                "pageLoadStrategy": "none",
                "goog:chromeOptions": {
                    "binary": chromium,
                    "args": [
                        "--headless",
                        "--no-sandbox",
                        "--disable-gpu",
                        "--disable-dev-shm-usage",
                        "--disable-quic",
                        "--no-first-run",
                        "--disable-background-networking",
                        "--disable-component-update",
                        "--disable-sync",
                        "--window-size=1280,800",
                        f"--user-data-dir={profile}",
                    ],
                },
            }
        }
    }
    sid = None
    try:
        sid = wd.req("POST", "/session", caps)["sessionId"]
        precise = True
        try:
            wd.req(
                "POST",
                f"/session/{sid}/goog/cdp/execute",
                {"cmd": "Page.addScriptToEvaluateOnNewDocument", "params": {"source": OBSERVER}},
            )
        except RuntimeError as e:
            precise = False
            print(f"  (no CDP observer, falling back to polling: {e})", file=sys.stderr)
        wd.req("POST", f"/session/{sid}/url", {"url": app_url})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                v = wd.req("POST", f"/session/{sid}/execute/sync", {"script": PROBE, "args": []}, timeout=10)
            except RuntimeError:
                v = None  # the document is still being replaced
            if v and v.get("found") and (v.get("frame") is not None or not precise):
                if precise:
                    ttfr_ms = v["frame"]
                else:
                    ttfr_ms = v["now"]
                # give the load event a moment so DCL/FCP are filled in
                return {
                    "ttfr_ms": round(ttfr_ms, 1),
                    "dom": rnd(v["dom"]),
                    "fcp": rnd(v["fcp"]),
                    "dcl": rnd(v["dcl"]),
                    "load": rnd(v["load"]),
                    "wasm_js_loaded": rnd(v["wasm_end"]),
                    "precise": precise,
                }
            time.sleep(0.01)
        die(f"no [data-test=login-form] within 30 s at {app_url}")
    finally:
        if sid:
            try:
                wd.req("DELETE", f"/session/{sid}", timeout=20)
            except Exception:
                pass
        shutil.rmtree(profile, ignore_errors=True)


def rnd(v):
    return None if v is None else round(v, 1)


def median_or_none(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium_version(chromium):
    try:
        return subprocess.run([chromium, "--version"], capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception:
        return "?"


# ------------------------------------------------------------------ report


def load(d, name):
    p = os.path.join(d, name)
    if not os.path.exists(p):
        return None
    with open(p) as f:
        return json.load(f)


def wrk_row(w):
    secs = w["duration_us"] / 1e6
    errors = sum(w["errors"].values())
    return {
        "rps": w["requests"] / secs,
        "p50": w["latency_us"]["p50"] / 1000,
        "p99": w["latency_us"]["p99"] / 1000,
        "max": w["latency_us"]["max"] / 1000,
        "errors": errors,
        "non2xx": w["errors"]["status"],
        "requests": w["requests"],
    }


def cpu_us_per_request(d, name, w):
    """Server CPU time (user + system) per request over a wrk run, in µs."""
    c = load(d, f"cpu-{name}.json")
    if not c or not w or not w["requests"]:
        return None
    return c["ticks"] / c["hz"] * 1e6 / w["requests"]


def cpu_cell(us):
    return f"{us:.0f} µs" if us is not None else "n/a"


def ok(cond):
    return "✅" if cond else "❌"


def report(d, out):
    meta = load(d, "meta.json") or {}
    lst, health = load(d, "wrk-list.json"), load(d, "wrk-health.json")
    rss, bundle, tt, seedr = load(d, "rss.json"), load(d, "bundle.json"), load(d, "ttfr.json"), load(d, "seed.json")
    lines = [
        f"# Slipway benchmark — {meta.get('date', '?')}",
        "",
        f"Machine: {meta.get('machine', '?')}. Commit `{meta.get('commit', '?')}`. "
        f"Server: release build, SQLite, `SLIPWAY_LOG={meta.get('log', '?')}`. "
        f"Load: wrk {meta.get('wrk', '')}, same machine (wrk and the server share the cores). "
        f"Load average (1/5/15 min): {meta.get('load', '?')}.",
        "",
        "| metric | value | goal | |",
        "|---|---|---|---|",
    ]
    if lst and health:
        L, H = wrk_row(lst), wrk_row(health)
        n = seedr["services"] if seedr else "?"
        lines += [
            f"| `GET /api/v1/environments/{{id}}/services?limit=50` ({n} services, bearer token) req/s "
            f"| {L['rps']:,.0f} | ≥ 15,000 | {ok(L['rps'] >= 15000)} |",
            f"| … latency p50 / p99 / max | {L['p50']:.2f} / {L['p99']:.2f} / {L['max']:.1f} ms "
            f"| p99 ≤ 10 ms | {ok(L['p99'] <= 10)} |",
            f"| … errors (non-2xx) | {L['errors']} ({L['non2xx']}) of {L['requests']:,} | 0 | {ok(L['errors'] == 0)} |",
            f"| `GET /health` req/s | {H['rps']:,.0f} | | |",
            f"| … latency p50 / p99 / max | {H['p50']:.2f} / {H['p99']:.2f} / {H['max']:.1f} ms | | |",
            f"| list ÷ health throughput | {L['rps'] / H['rps']:.2f} | | |",
            f"| server CPU per request: list / health | {cpu_cell(cpu_us_per_request(d, 'list', lst))} / "
            f"{cpu_cell(cpu_us_per_request(d, 'health', health))} | | |",
        ]
        diag = (
            ("me", "diagnostic: `GET /api/v1/auth/me` (token auth only)"),
            ("list1", "diagnostic: the list with `limit=1`"),
        )
        for name, label in diag:
            w = load(d, f"wrk-{name}.json")
            if w:
                r = wrk_row(w)
                lines.append(
                    f"| {label} req/s, p50 / p99, server CPU per request | {r['rps']:,.0f}, "
                    f"{r['p50']:.2f} / {r['p99']:.2f} ms, {cpu_cell(cpu_us_per_request(d, name, w))} | | |"
                )
        if seedr:
            lines.append(
                f"| seeding {seedr['services']} services via the API (one client) | {seedr['seed_seconds']:.1f} s, "
                f"page of 50 = {seedr['page_bytes'] / 1024:.1f} KiB | | |"
            )
    else:
        lines.append("| throughput | not measured | | |")
    if rss:
        lines += [
            f"| server RSS idle after start | {rss['idle_kb'] / 1024:.1f} MiB | | |",
            f"| server RSS after seeding + load | {rss['after_kb'] / 1024:.1f} MiB (peak {rss['peak_kb'] / 1024:.1f} MiB) | | |",
        ]
    if bundle:
        served = bundle.get("served", bundle["gz"])
        lines.append(
            f"| dashboard bundle (wasm + js) gzip as served | {served / 1000:.0f} kB "
            f"(raw {bundle['raw'] / 1000:.0f} kB; gzip -9 of the files {bundle['gz'] / 1000:.0f} kB) "
            f"| ≤ 400 kB gz | {ok(served <= 400_000)} |"
        )
        for f in bundle["files"]:
            lines.append(
                f"| … `{f['name']}` raw / gzip -9 / served | {f['raw'] / 1000:.0f} / {f['gz'] / 1000:.0f} / "
                f"{f.get('served', f['gz']) / 1000:.0f} kB | | |"
            )
    else:
        lines.append("| dashboard bundle | not measured (no static/pkg) | | |")
    if tt:
        fcp = tt.get("median_fcp_ms")
        fcp_s = f", first contentful paint {fcp:.0f} ms" if fcp is not None else ""
        runs_s = ", ".join(f"{r['ttfr_ms']:.0f}" for r in tt["runs"])
        lines.append(
            f"| time to first render of `/login` (cold profile, median of {len(tt['runs'])}) "
            f"| {tt['median_ms']:.0f} ms{fcp_s} (runs: {runs_s} ms) | | |"
        )
    else:
        lines.append("| time to first render | not measured | | |")
    lines.append("")
    text = "\n".join(lines)
    with open(out, "w") as f:
        f.write(text)
    print(text)


def main():
    if len(sys.argv) < 2:
        die(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "seed" and len(args) == 3:
        seed(args[0], int(args[1]), args[2])
    elif cmd == "ttfr" and len(args) == 2:
        ttfr(args[0], args[1])
    elif cmd == "report" and len(args) == 2:
        report(args[0], args[1])
    else:
        die(__doc__)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""The admin listener of the real binary: /healthz, /readyz (ready; not ready
with an expired credential), /metrics after known traffic (exact counter
values, exposition format), 404/405, a unix-socket admin address, and
`credproxy healthcheck` (exit 0 ready, 1 not ready / unreachable / no admin),
with the environment's proxy variables ignored. Env.close asserts the secret
appears in no output, /metrics bodies included.

Run: CREDPROXY_BIN=build/credproxy /usr/bin/python3 tests/integration/test_admin.py [TEST...]
"""
import os
import re
import socket
import subprocess
import time

import harness as h
from harness import check


def admin_get(port, path, method="GET"):
    return h.raw_one(port, ("%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n"
                            % (method, path, port)).encode(), timeout=10)


def unix_get(path, target):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    s.sendall(("GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" % target).encode())
    r, _ = h.read_response(s)
    s.close()
    return r


def start_with_admin(env, credentials=None, admin=None):
    aport = None
    if admin is None:
        aport = h.free_port()
        admin = "127.0.0.1:%d" % aport
    env.start_proxy(credentials=credentials, extra={"admin": admin})
    if aport is not None:
        env.wait_listen(aport, proc=env.proxy)
    return aport


def healthcheck(env, extra_env=None):
    e = h.clean_env()
    e.update(extra_env or {})
    p = subprocess.run([h.BIN, "healthcheck", "-c", env.config_path], env=e, capture_output=True,
                       timeout=20)
    out, err = p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
    env.extra_texts += [out, err]
    return p.returncode, out, err


def expired_credentials(env):
    path = os.path.join(env.dir, "token")
    with open(path, "w") as f:
        f.write(h.TOKEN + "\n")
    os.chmod(path, 0o600)
    return {"svc": {"type": "basic", "email": h.EMAIL, "token_file": path, "expires": "2026-01-01",
                    "rate_limit": "off"}}


@h.test
def admin_health_and_ready(env):
    env.start_fake()
    aport = start_with_admin(env)
    r = admin_get(aport, "/healthz")
    check(r.status == 200 and r.body == b"ok\n", "/healthz 200 ok", r)
    r = admin_get(aport, "/readyz")
    check(r.status == 200 and r.body == b"ready\n", "/readyz 200 ready", r)
    r = admin_get(aport, "/readyz?verbose=1")
    check(r.status == 200, "a query string does not change the path", r)
    r = admin_get(aport, "/nope")
    check(r.status == 404, "unknown path 404", r)
    r = admin_get(aport, "/metrics", method="POST")
    check(r.status == 405 and r.header("Allow") == "GET", "POST is 405 with Allow: GET", r)
    r = admin_get(aport, "/healthz", method="DELETE")
    check(r.status == 405, "DELETE is 405", r)
    rc, out, err = healthcheck(env)
    check(rc == 0, "healthcheck exits 0 when ready", (rc, out, err))
    # No proxy from the environment: a dead HTTP_PROXY must not matter.
    dead = "http://127.0.0.1:%d" % h.free_port()
    rc, out, err = healthcheck(env, {"http_proxy": dead, "HTTP_PROXY": dead, "ALL_PROXY": dead})
    check(rc == 0, "healthcheck ignores HTTP_PROXY/ALL_PROXY", (rc, out, err))


@h.test(timeout=90)
def admin_metrics_after_traffic(env):
    env.start_fake()
    aport = start_with_admin(env)
    for _ in range(3):
        r = env.curl_proxy("http://acme.atlassian.net/rest/api/3/myself", timeout=15)
        check(r.status == 200 and r.rc == 0, "request through the proxy", r)
    r = env.curl_proxy("http://acme.atlassian.net/rest/api/3/nonexistent-thing", timeout=15)
    check(r.status == 404, "a 404 from upstream", r)
    # The request is counted when it finishes; give the worker a moment.
    body = ""
    pat200 = re.compile(r'^credproxy_requests_total\{site="acme\.atlassian\.net",credential="svc",'
                        r'client="[^"]*",code="200"\} (\d+)$', re.M)
    end = time.monotonic() + 5
    while time.monotonic() < end:
        m = admin_get(aport, "/metrics")
        body = m.body.decode("utf-8", "replace")
        got = pat200.search(body)
        if got and got.group(1) == "3" and 'code="404"} 1' in body:
            break
        time.sleep(0.1)
    env.extra_texts.append(body)
    check(m.status == 200, "/metrics 200", m)
    check((m.header("Content-Type") or "").startswith("text/plain; version=0.0.4"),
          "exposition content type", m.header("Content-Type"))
    got = pat200.search(body)
    check(got and got.group(1) == "3", 'credproxy_requests_total{...code="200"} 3', body)
    check(re.search(r'^credproxy_requests_total\{site="acme\.atlassian\.net",credential="svc",'
                    r'client="[^"]*",code="404"\} 1$', body, re.M), 'code="404"} 1', body)
    cnt = re.search(r'^credproxy_request_duration_seconds_count\{site="acme\.atlassian\.net"\} (\d+)$',
                    body, re.M)
    check(cnt and cnt.group(1) == "4", "histogram count 4", body)
    inf = re.search(r'^credproxy_request_duration_seconds_bucket\{site="acme\.atlassian\.net",'
                    r'le="\+Inf"\} (\d+)$', body, re.M)
    check(inf and inf.group(1) == "4", "+Inf bucket equals the count", body)
    up = re.search(r"^credproxy_upstream_connections_total (\d+)$", body, re.M)
    check(up and 1 <= int(up.group(1)) <= 4, "at least one upstream connection, at most one per "
          "request", body)
    for family, kind in (("credproxy_requests_total", "counter"),
                         ("credproxy_request_duration_seconds", "histogram"),
                         ("credproxy_upstream_connections_total", "counter"),
                         ("credproxy_ratelimit_queued", "gauge"),
                         ("credproxy_ratelimit_rejected_total", "counter"),
                         ("credproxy_credential_expiry_timestamp_seconds", "gauge"),
                         ("credproxy_config_reloads_total", "counter"),
                         ("credproxy_client_connections", "gauge")):
        check("# TYPE %s %s\n" % (family, kind) in body, "TYPE line for %s" % family, body)
        check("# HELP %s " % family in body, "HELP line for %s" % family)
    check('credproxy_config_reloads_total{result="ok"} 0' in body, "no reload yet", body)
    for line in body.splitlines():
        check(line.startswith("# ") or re.match(r"^[a-z_]+(\{[^}]*\})? -?[0-9.e+Inf]+$", line),
              "every line is a comment or a sample", line)


@h.test
def admin_not_ready_when_expired(env):
    env.start_fake()
    aport = start_with_admin(env, credentials=expired_credentials(env))
    r = admin_get(aport, "/healthz")
    check(r.status == 200, "/healthz stays 200", r)
    r = admin_get(aport, "/readyz")
    check(r.status == 503 and b"credential 'svc' expired on 2026-01-01" in r.body,
          "/readyz 503 names the expired credential", r)
    m = admin_get(aport, "/metrics")
    body = m.body.decode("utf-8", "replace")
    env.extra_texts.append(body)
    check('credproxy_credential_expiry_timestamp_seconds{credential="svc"} 1767225600' in body,
          "expiry gauge from `expires`", body)
    rc, out, err = healthcheck(env)
    check(rc == 1, "healthcheck exits 1 when not ready", (rc, out, err))
    check("503" in err and "credential 'svc' expired on 2026-01-01" in err,
          "healthcheck prints the status and the reason", err)


@h.test
def admin_unix_socket(env):
    env.start_fake()
    sock = os.path.join(env.dir, "admin.sock")
    start_with_admin(env, admin="unix:" + sock)
    end = time.monotonic() + 10
    while not os.path.exists(sock) and time.monotonic() < end:
        time.sleep(0.05)
    r = unix_get(sock, "/healthz")
    check(r.status == 200 and r.body == b"ok\n", "/healthz over the unix socket", r)
    r = unix_get(sock, "/readyz")
    check(r.status == 200, "/readyz over the unix socket", r)
    rc, out, err = healthcheck(env)
    check(rc == 0, "healthcheck over the unix socket", (rc, out, err))
    env.stop_proxy()
    check(not os.path.exists(sock), "the socket file is removed on shutdown")


@h.test
def healthcheck_failures(env):
    env.config()
    rc, out, err = healthcheck(env)
    check(rc == 1 and "proxy not accepting on 127.0.0.1:" in err,
          "no admin and no proxy running: exit 1 naming the listener", (rc, out, err))
    env.config(extra={"admin": "127.0.0.1:%d" % h.free_port()})
    t0 = time.monotonic()
    rc, out, err = healthcheck(env)
    check(rc == 1 and "cannot reach" in err, "nothing listening: exit 1", (rc, out, err))
    check(time.monotonic() - t0 < 5, "bounded by the 2 s timeout")


@h.test
def healthcheck_without_admin(env):
    """The ATLASSIAN_* default has no admin: healthcheck still works (container HEALTHCHECK)."""
    env.start_fake()
    env.start_proxy()
    rc, out, err = healthcheck(env)
    check(rc == 0, "no admin: ready when the proxy accepts and credentials are valid", (rc, out, err))
    env.stop_proxy()
    expired = {"svc": {"email": h.EMAIL, "token_env": "ITEST_ATLASSIAN_TOKEN",
                       "expires": "2026-01-01"}}
    env.config(credentials=expired)
    rc, out, err = healthcheck(env, {"ITEST_ATLASSIAN_TOKEN": h.TOKEN})
    check(rc == 1 and "expired on 2026-01-01" in err,
          "no admin: an expired credential is not ready", (rc, out, err))


if __name__ == "__main__":
    h.main()

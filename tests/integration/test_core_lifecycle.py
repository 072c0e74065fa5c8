#!/usr/bin/python3
"""Process lifecycle and upstream failures: graceful SIGTERM with a request in
flight, the head-read timeout, 502/504 for connect/TLS/DNS/slow upstreams, no
loop through proxy variables in the environment, the embedded default
configuration, and the exit-2 message when nothing is configured. Every test
ends with the secret absent from every log (Env.close).

Run: CREDPROXY_BIN=build/credproxy /usr/bin/python3 tests/integration/test_core_lifecycle.py [TEST...]
"""
import os
import socket
import threading
import time

import harness as h
from harness import check

HEAD_TIMEOUT_S = 10  # proxy/conn.h CONN_HEAD_TIMEOUT_MS (whole head, from its first byte)


@h.test(timeout=40)
def lifecycle_sigterm_drains(env):
    env.start_fake()
    env.start_proxy(token_env=True, extra={"shutdown_timeout": "10s"})
    box = {}

    def slow():
        box["r"] = h.raw_one(env.port, b"GET http://acme.atlassian.net/__slow?delay=1&chunks=3 "
                             b"HTTP/1.1\r\nHost: acme.atlassian.net\r\n\r\n", timeout=20)
    t = threading.Thread(target=slow, daemon=True)
    t.start()
    end = time.monotonic() + 5
    while not env.fake.records(path="/__slow") and time.monotonic() < end:
        time.sleep(0.05)
    check(env.fake.records(path="/__slow"), "the slow request reached the fake")
    t0 = time.monotonic()
    env.proxy.p.send_signal(15)
    time.sleep(0.5)
    # A new connection after SIGTERM is refused, closed, or at least never served.
    served = None
    try:
        with socket.create_connection(("127.0.0.1", env.port), timeout=1.5) as s2:
            s2.sendall(b"GET http://acme.atlassian.net/__echo HTTP/1.1\r\n"
                       b"Host: acme.atlassian.net\r\nConnection: close\r\n\r\n")
            served, _ = h.read_response(s2)
    except OSError:
        pass
    check(served is None or served.status is None, "a new request after SIGTERM is not served",
          served)
    t.join(20)
    r = box.get("r")
    check(r is not None and r.status == 200 and r.body == b"chunk 0\nchunk 1\nchunk 2\n",
          "the in-flight request completes", r)
    try:
        rc = env.proxy.p.wait(12)
    except Exception:  # noqa: BLE001
        rc = None
    check(rc == 0, "exit 0 after the drain", rc)
    check(time.monotonic() - t0 < 10, "exited promptly once drained", time.monotonic() - t0)


@h.test(timeout=40)
def lifecycle_head_timeout(env):
    env.start_fake()
    env.start_proxy()
    s = socket.create_connection(("127.0.0.1", env.port), timeout=5)
    t0 = time.monotonic()
    s.sendall(b"GET http://acme.atlassian.net/__echo HTTP/1.1\r\nHost: acme.atlassian.net\r\n")
    closed_at = None
    data = b""
    try:
        while time.monotonic() - t0 < HEAD_TIMEOUT_S + 8:
            s.sendall(b"X")  # one byte of a never-ending header line every 0.5 s
            s.settimeout(0.5)
            try:
                d = s.recv(4096)
                if not d:
                    closed_at = time.monotonic()
                    break
                data += d
            except socket.timeout:
                pass
    except OSError:
        closed_at = time.monotonic()
    s.close()
    check(closed_at is not None, "a trickling head is cut off", data[:200])
    if closed_at is not None:
        dt = closed_at - t0
        h.log("    trickling client cut after %.1fs (%r)" % (dt, data[:40]))
        check(HEAD_TIMEOUT_S - 2 <= dt <= HEAD_TIMEOUT_S + 5, "cut near the head timeout", dt)
    check(not env.fake.records(), "nothing reached the fake")
    env.stop_proxy()


def _err(env, url, code, status, words):
    r = env.curl_proxy(url, timeout=30)
    h.proxy_error(r, status, code)
    msg = ((r.json() or {}).get("message") or "").lower()
    check(any(w in msg for w in words), "message names %s" % "/".join(words), msg)
    return r


@h.test
def lifecycle_upstream_down_502(env):
    env.start_fake()
    dead = h.free_port()
    env.start_proxy(upstream={"connect_to": ["acme.atlassian.net:443:127.0.0.1:%d" % dead],
                              "connect_timeout": "3s"})
    _err(env, "http://acme.atlassian.net/rest/api/3/myself", "upstream_unreachable", 502, ["connect"])
    env.stop_proxy()


@h.test
def lifecycle_upstream_tls_untrusted_502(env):
    env.start_fake()
    env.start_proxy(upstream={"ca_file": env.tls["other_ca"]})
    _err(env, "http://acme.atlassian.net/rest/api/3/myself", "upstream_unreachable", 502,
         ["tls", "certificate", "ssl"])
    check(all(r["authorization"] is None for r in env.fake.records()),
          "no request (so no credential) went over the unverified connection")
    env.stop_proxy()


@h.test
def lifecycle_upstream_dns_502(env):
    env.start_fake()
    env.start_proxy(sites=[{"host": "nonexistent.invalid", "credential": "svc"},
                           {"domain": "acme", "credential": "svc"}])
    _err(env, "http://nonexistent.invalid/rest/api/3/myself", "upstream_unreachable", 502,
         ["resolve", "dns", "nonexistent.invalid"])
    env.stop_proxy()


@h.test
def lifecycle_upstream_timeout_504(env):
    env.start_fake()
    env.start_proxy(upstream={"timeout": "2s"})
    t0 = time.monotonic()
    r = env.curl_proxy("http://acme.atlassian.net/__slow?head_delay=6&chunks=1&delay=0", timeout=20)
    dt = time.monotonic() - t0
    h.proxy_error(r, 504, "upstream_timeout")
    check(dt < 5, "504 comes at the upstream timeout, not later", dt)
    env.stop_proxy()


@h.test
def lifecycle_env_proxy_no_loop(env):
    env.start_fake()
    port = h.free_port()
    me = "http://127.0.0.1:%d" % port
    penv = {"HTTP_PROXY": me, "HTTPS_PROXY": me, "http_proxy": me, "https_proxy": me,
            "ALL_PROXY": me, "all_proxy": me}
    env.start_proxy(port=port, env=penv)
    r = env.curl_proxy("http://acme.atlassian.net/rest/api/3/myself", timeout=15)
    check(r.status == 200, "works with proxy variables pointing at itself", r)
    recs = env.fake.records()
    check(len(recs) == 1 and recs[0]["sni"] == "acme.atlassian.net",
          "exactly one upstream request, straight to the fake", len(recs))
    env.stop_proxy()


def _port_free(port):
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


@h.test(timeout=30)
def lifecycle_embedded_default(env):
    free = _port_free(8080)
    venv = {"ATLASSIAN_SITE": "acme", "ATLASSIAN_EMAIL": h.EMAIL, "ATLASSIAN_API_TOKEN": h.TOKEN}
    p = env.spawn([h.BIN, "run"], env=h.clean_env(venv), cwd=env.dir)
    end = time.monotonic() + 8
    listening = False
    while time.monotonic() < end and p.alive():
        if free and "8080" in p.stderr():
            listening = True
            break
        time.sleep(0.1)
    err = p.stderr()
    if free:
        check(p.alive(), "the embedded default keeps running", h.redact(err[-1500:]))
        check(listening and "127.0.0.1:8080" in err, "startup message names 127.0.0.1:8080",
              err[-1500:])
        rc = p.stop()
        check(rc == 0, "exit 0 on SIGTERM", rc)
    else:
        h.log("    port 8080 busy: expecting exit 2 naming the address")
        try:
            rc = p.p.wait(8)
        except Exception:  # noqa: BLE001
            rc = None
        check(rc == 2, "exit 2 when 127.0.0.1:8080 is busy", rc)
        check("8080" in p.stderr(), "the message names 8080", p.stderr()[-1500:])


@h.test(timeout=20)
def lifecycle_nothing_configured(env):
    p = env.spawn([h.BIN, "run"], env=h.clean_env(), cwd=env.dir)
    try:
        rc = p.p.wait(10)
    except Exception:  # noqa: BLE001
        rc = None
    err = p.stderr()
    check(rc == 2, "run with no config and no variables exits 2", rc)
    for var in ("ATLASSIAN_SITE", "ATLASSIAN_EMAIL", "ATLASSIAN_API_TOKEN"):
        check(var in err, "the message names %s" % var, err[-1500:])
    # A partial set says what is missing, without echoing the token.
    p = env.spawn([h.BIN, "run"], env=h.clean_env({"ATLASSIAN_API_TOKEN": h.TOKEN}), cwd=env.dir)
    try:
        rc = p.p.wait(10)
    except Exception:  # noqa: BLE001
        rc = None
    check(rc == 2, "a partial set exits 2", rc)
    check("ATLASSIAN_SITE" in p.stderr() or "ATLASSIAN_EMAIL" in p.stderr(),
          "the partial-set message names what is missing", p.stderr()[-1500:])


if __name__ == "__main__":
    h.main()

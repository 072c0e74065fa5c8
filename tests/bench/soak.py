#!/usr/bin/python3
"""credproxy soak: mixed traffic in all three modes with reloads and faults.

Run through tests/bench/soak.sh (it runs this inside a private network
namespace when it can). Starts the fake Atlassian (tests/fake_atlassian.py),
redis-server when installed (store: redis://), and the proxy from --bin, then
for --minutes:

  * --concurrency client threads, each cycling forward (absolute-form),
    gateway (Host: acme.localhost) and intercepted CONNECT sessions, with
    keep-alive, and in each: GET myself, a JQL search, a 256 KiB download
    (sha-checked), a 64 KiB upload (sha echoed back and checked);
  * a SIGHUP every --reload-every seconds, alternating the token file between
    two tokens the fake accepts (so a reload really changes the credential);
  * a fault every --fault-every seconds, round robin: each /__fault/KIND of
    the fake, an upstream reset during an upload, a slow upstream past upstream.timeout, a client that vanishes
    mid-response, a client that sends half a head and goes away, a client that
    aborts an upload, and Redis killed (restarted 5 s later).

Every request is classified. A normal request is "ok" only when its status is
2xx and its body is complete and right. A fault request must end visibly: the
proxy's own 502/504, or a short body / missing chunked terminator with the
connection closed. "lost silently" counts requests that looked complete but
were not (wrong bytes, or a fault that ended like a success): the target is 0.

Reports RSS (after warm-up and at the end), VmHWM, open descriptors of the
proxy at start and after the traffic stopped, every non-2xx by cause (client
side, and the proxy's audit lines by status and error code), and the reloads.
This is a benchmark, not a test: it exits 0 when it could measure, 1 when a
target was missed.
"""

import argparse
import collections
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
import harness as h  # noqa: E402
import fake_atlassian as fa  # noqa: E402

SITE = "acme.atlassian.net"
TOKEN_B = "ATATT3xFfGF0-soak-rotated-" + os.urandom(12).hex()
DOWNLOAD = 256 * 1024
UPLOAD = 64 * 1024
UPLOAD_BODY = os.urandom(UPLOAD)
UPLOAD_SHA = hashlib.sha256(UPLOAD_BODY).hexdigest()
DOWNLOAD_BODY = b"".join(fa.pattern_bytes(o, min(fa.IO_BLOCK, DOWNLOAD - o))
                         for o in range(0, DOWNLOAD, fa.IO_BLOCK))
TARGET_RSS_GROWTH_KIB = 10 * 1024


def log(*a):
    sys.stderr.write(time.strftime("%H:%M:%S ") + " ".join(str(x) for x in a) + "\n")
    sys.stderr.flush()


def nfds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def fd_kinds(pid):
    kinds = collections.Counter()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            t = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        kinds[t.split(":")[0] if ":" in t else "file"] += 1
    return dict(kinds)


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = collections.Counter()
        self.causes = collections.Counter()
        self.silent = []

    def add(self, key, cause=None):
        with self.lock:
            self.counts[key] += 1
            if cause:
                self.causes[cause] += 1

    def lost(self, what):
        with self.lock:
            self.counts["lost silently"] += 1
            if len(self.silent) < 20:
                self.silent.append(what)


class Session:
    """One client connection in one mode (keep-alive)."""

    def __init__(self, port, mode, ca):
        self.mode = mode
        raw = socket.create_connection(("127.0.0.1", port), timeout=20)
        raw.settimeout(20)
        if mode == "intercept":
            raw.sendall(("CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n" % (SITE, SITE)).encode())
            r, _ = h.read_response(raw, head_only=True)
            if r.status != 200:
                raw.close()
                raise OSError("CONNECT answered %s" % r.status)
            ctx = ssl.create_default_context(cafile=ca)
            raw = ctx.wrap_socket(raw, server_hostname=SITE)
        self.sock, self.buf, self.port = raw, b"", port

    def request(self, method, path, body=b"", extra=""):
        if self.mode == "forward":
            line, host = "%s http://%s%s HTTP/1.1" % (method, SITE, path), SITE
        elif self.mode == "gateway":
            line, host = "%s %s HTTP/1.1" % (method, path), "acme.localhost:%d" % self.port
        else:
            line, host = "%s %s HTTP/1.1" % (method, path), SITE
        head = "%s\r\nHost: %s\r\n%s" % (line, host, extra)
        if body or method in ("POST", "PUT"):
            head += "Content-Length: %d\r\n" % len(body)
        self.sock.sendall(head.encode() + b"\r\n" + body)
        r, self.buf = h.read_response(self.sock, self.buf)
        return r

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def classify_normal(stats, mode, what, r, ok_body):
    key = "%s %s" % (mode, what)
    if r.status is None:
        stats.add("failed (no response)", "%s: %s" % (key, r.error))
        return False
    if not 200 <= r.status < 300:
        code = r.header("X-Credproxy-Error") or "upstream"
        msg = (r.json() or {}).get("message", "") if code != "upstream" else ""
        stats.add("non-2xx", "%s: %d %s %s" % (key, r.status, code, msg[:120]))
        return r.header("connection", "").lower() != "close"
    if r.error:
        stats.add("failed (cut)", "%s: 200 then %s" % (key, r.error))
        return False
    if not ok_body(r):
        stats.lost("%s: 200 with a wrong body (%d bytes)" % (key, len(r.body)))
        return False
    stats.add("ok")
    return r.header("connection", "").lower() != "close"


def client_loop(args, port, ca, stats, stop, seed):
    rnd = random.Random(seed)
    modes = ["forward", "gateway", "intercept"]
    while not stop.is_set():
        mode = modes[rnd.randrange(3)]
        try:
            s = Session(port, mode, ca)
        except OSError as e:
            stats.add("failed (connect)", "%s: %s" % (mode, e))
            time.sleep(0.2)
            continue
        try:
            for _ in range(rnd.randint(1, 8)):
                if stop.is_set():
                    break
                pick = rnd.random()
                if pick < 0.4:
                    r = s.request("GET", "/rest/api/3/myself")
                    keep = classify_normal(stats, mode, "myself", r,
                                           lambda x: (x.json() or {}).get("displayName")
                                           == "Service Bot")
                elif pick < 0.6:
                    r = s.request("GET", "/rest/api/3/search/jql?jql=project%3DACME&maxResults=3")
                    keep = classify_normal(stats, mode, "search", r,
                                           lambda x: len((x.json() or {}).get("issues", [])) == 3)
                elif pick < 0.8:
                    r = s.request("GET", "/__download?size=%d" % DOWNLOAD)
                    keep = classify_normal(stats, mode, "download", r,
                                           lambda x: x.body == DOWNLOAD_BODY)
                else:
                    r = s.request("POST", "/__upload", UPLOAD_BODY,
                                  "Content-Type: application/octet-stream\r\n")
                    keep = classify_normal(stats, mode, "upload", r,
                                           lambda x: (x.json() or {}).get("sha256") == UPLOAD_SHA)
                if not keep:
                    break
        except OSError as e:
            stats.add("failed (socket)", "%s: %s" % (mode, e))
        finally:
            s.close()
        time.sleep(args.think)


# ---- faults ----------------------------------------------------------------
def fault_upstream(port, ca, kind, stats, mode):
    s = Session(port, mode, ca)
    try:
        r = s.request("GET", fa.FAULT_PREFIX + kind)
        key = "fault %s (%s)" % (kind, mode)
        if r.status in (502, 504) and r.header("X-Credproxy-Error"):
            stats.add("fault visible", "%s: %d %s" % (key, r.status, r.header("X-Credproxy-Error")))
        elif r.status is None:
            stats.add("fault visible", "%s: %s" % (key, r.error))
        elif r.error:
            closed = h.connection_closed(s.sock, timeout=5)
            if closed:
                stats.add("fault visible", "%s: %d then %s, closed" % (key, r.status, r.error))
            else:
                stats.lost("%s: cut but the connection stayed open" % key)
        else:
            stats.lost("%s: ended like a success (%s, %d bytes)" % (key, r.status, len(r.body)))
    finally:
        s.close()


def fault_upload_reset(port, ca, stats, mode):
    """The upstream resets while the client still uploads: an error, never a success."""
    s = Session(port, mode, ca)
    try:
        r = s.request("POST", fa.FAULT_PREFIX + "reset-during-upload", UPLOAD_BODY * 16)
    except OSError as e:
        stats.add("fault visible", "fault reset-during-upload (%s): %s" % (mode, e))
        return
    finally:
        s.close()
    key = "fault reset-during-upload (%s)" % mode
    if r.status is None or r.status >= 500:
        stats.add("fault visible", "%s: %s %s" % (key, r.status, r.header("X-Credproxy-Error")
                                                  or r.error))
    else:
        stats.lost("%s: %s" % (key, r.status))


def fault_slow(port, ca, stats, mode):
    s = Session(port, mode, ca)
    try:
        r = s.request("GET", "/__slow?head_delay=4&delay=0&chunks=1")
        if r.status == 504 and r.header("X-Credproxy-Error") == "upstream_timeout":
            stats.add("fault visible", "fault slow upstream (%s): 504 upstream_timeout" % mode)
        else:
            stats.lost("fault slow upstream (%s): %s %s" % (mode, r.status, r.error))
    finally:
        s.close()


def fault_client_vanishes(port, stats):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(("GET http://%s/__download?size=%d HTTP/1.1\r\nHost: %s\r\n\r\n"
               % (SITE, 4 * 1024 * 1024, SITE)).encode())
    s.recv(4096)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()
    stats.add("client fault", "client reset mid-download")


def fault_half_head(port, stats):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"GET http://acme.atlassian.net/rest/api/3/myself HTTP/1.1\r\nHost: acme")
    s.close()
    stats.add("client fault", "half a head, then gone")


def fault_upload_abort(port, stats):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(("POST http://%s/__upload HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n"
               % (SITE, SITE, 10 * UPLOAD)).encode() + UPLOAD_BODY)
    time.sleep(0.2)
    s.close()
    stats.add("client fault", "upload aborted mid-body")


def fault_loop(args, env, ca, stats, stop, redis_box):
    kinds = list(fa.FAULT_KINDS)
    kinds.remove("stall-mid-body")
    kinds.remove("reset-during-upload")
    plan = ([("upstream", k) for k in kinds] + [("upload", None), ("slow", None), ("vanish", None),
                                                 ("half", None), ("abort", None)])
    if redis_box.get("proc"):
        plan.append(("redis", None))
    i = 0
    while not stop.wait(args.fault_every):
        kind, arg = plan[i % len(plan)]
        mode = ["forward", "gateway", "intercept"][(i // len(plan)) % 3]
        i += 1
        try:
            if kind == "upstream":
                fault_upstream(env.port, ca, arg, stats, mode)
            elif kind == "upload":
                fault_upload_reset(env.port, ca, stats, mode)
            elif kind == "slow":
                fault_slow(env.port, ca, stats, mode)
            elif kind == "vanish":
                fault_client_vanishes(env.port, stats)
            elif kind == "half":
                fault_half_head(env.port, stats)
            elif kind == "abort":
                fault_upload_abort(env.port, stats)
            elif kind == "redis":
                redis_box["proc"].kill()
                stats.add("store fault", "redis killed (restarted 5 s later)")
                threading.Timer(5.0, lambda: redis_box.update(
                    proc=start_redis(env, redis_box["port"]))).start()
        except OSError as e:
            stats.add("fault visible", "fault %s (%s): %s" % (kind, mode, e))


def reload_loop(args, env, stats, stop):
    tokens = [TOKEN_B, h.TOKEN]
    n = 0
    while not stop.wait(args.reload_every):
        path = os.path.join(env.dir, "token")
        tmp = path + ".new"
        with open(tmp, "w") as f:
            f.write(tokens[n % 2] + "\n")
        os.chmod(tmp, 0o600)
        os.rename(tmp, path)
        env.proxy.p.send_signal(signal.SIGHUP)
        n += 1
        stats.add("reloads")


def start_redis(env, port):
    p = env.spawn([shutil.which("redis-server"), "--port", str(port), "--save", "",
                   "--appendonly", "no", "--bind", "127.0.0.1"])
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.02)
    return p


def audit_summary(stderr_text):
    by = collections.Counter()
    total = 0
    for ln in stderr_text.splitlines():
        try:
            o = json.loads(ln)
        except ValueError:
            continue
        if o.get("msg") != "audit":
            continue
        total += 1
        st = o.get("status")
        if not (isinstance(st, int) and 200 <= st < 300) or o.get("error"):
            by["%s %s %s" % (o.get("mode"), st, o.get("error") or "-")] += 1
    return total, by


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=h.BIN)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--think", type=float, default=0.05, help="seconds between sessions")
    ap.add_argument("--reload-every", type=float, default=60.0)
    ap.add_argument("--fault-every", type=float, default=4.0)
    ap.add_argument("--warmup", type=float, default=20.0)
    args = ap.parse_args()
    h.BIN = args.bin

    env = h.Env("soak")
    sites = fa.default_sites(h.EMAIL, h.TOKEN)
    for s in sites.values():
        s["credentials"].append([h.EMAIL, TOKEN_B])
    env.start_fake(sites=sites)
    certs = os.path.join(env.dir, "certs")
    extra = {"log": {"level": "info", "audit": True, "format": "json"},
             "interception": {"ca_cert": os.path.join(certs, "ca.pem"),
                              "ca_key": os.path.join(certs, "ca.key")}}
    redis_box = {}
    if shutil.which("redis-server"):
        redis_box["port"] = h.free_port()
        redis_box["proc"] = start_redis(env, redis_box["port"])
        extra["rate_limit"] = {"store": "redis://127.0.0.1:%d" % redis_box["port"]}
    cred = {"type": "basic", "email": h.EMAIL, "token_file": os.path.join(env.dir, "token"),
            "rate_limit": "100000/min", "burst": 1000}
    env.config(upstream={"timeout": "3s"}, extra=extra, credentials={"svc": cred})
    subprocess.run([h.BIN, "ca", "init", "-c", env.config_path, "--dir", certs], check=True,
                   env=h.clean_env(), capture_output=True, timeout=30)
    env.start_proxy(upstream={"timeout": "3s"}, extra=extra, credentials={"svc": cred})
    pid = env.proxy.pid
    ca = os.path.join(certs, "ca.pem")
    stats = Stats()
    stop = threading.Event()
    log("soak: %.1f min, %d clients, reload every %.0f s, a fault every %.0f s, redis %s; dir %s"
        % (args.minutes, args.concurrency, args.reload_every, args.fault_every,
           "on" if redis_box else "off", env.dir))
    fds0 = nfds(pid)
    threads = [threading.Thread(target=client_loop, args=(args, env.port, ca, stats, stop, i),
                                daemon=True) for i in range(args.concurrency)]
    for t in threads:
        t.start()
    time.sleep(min(args.warmup, args.minutes * 60 / 4))
    rss0, fds_warm = h.vmrss_kib(pid), nfds(pid)
    t_start = time.monotonic()
    aux = [threading.Thread(target=fault_loop, args=(args, env, ca, stats, stop, redis_box),
                            daemon=True),
           threading.Thread(target=reload_loop, args=(args, env, stats, stop), daemon=True)]
    for t in aux:
        t.start()
    end = time.monotonic() + args.minutes * 60
    samples = []
    while time.monotonic() < end and env.proxy.alive():
        time.sleep(min(30, max(1, end - time.monotonic())))
        samples.append((round((time.monotonic() - t_start) / 60, 1), h.vmrss_kib(pid), nfds(pid)))
        log("  t=%.1f min rss=%d KiB fds=%d ok=%d lost=%d" % (
            samples[-1][0], samples[-1][1], samples[-1][2], stats.counts["ok"],
            stats.counts["lost silently"]))
    stop.set()
    for t in threads + aux:
        t.join(30)
    alive = env.proxy.alive()
    # Let client connections close and the idle upstream pool settle.
    time.sleep(3)
    rss1, hwm = (h.vmrss_kib(pid), h.vmhwm_kib(pid)) if alive else (None, None)
    fds1 = nfds(pid) if alive else None
    kinds1 = fd_kinds(pid) if alive else {}
    if redis_box.get("proc") and not redis_box["proc"].alive():
        redis_box["proc"] = start_redis(env, redis_box["port"])
    total_audit, audit_bad = audit_summary(env.proxy.stderr())
    secret_seen = any(t in env.proxy.stderr() for t in (h.TOKEN, TOKEN_B, h.B64))
    reloads_ok = env.proxy.stderr().count("configuration reloaded")
    reloads_bad = env.proxy.stderr().count("reload rejected")

    # A clean shutdown after all that: exit 0 (a sanitizer build also reports leaks here).
    rc = env.proxy.stop(signal.SIGTERM, timeout=30) if alive else None
    err_text = env.proxy.stderr()
    sanitizer = [ln for ln in err_text.splitlines()
                 if "Sanitizer" in ln and ("ERROR" in ln or "SUMMARY" in ln)]

    c = stats.counts
    growth = (rss1 - rss0) if alive else None
    out = ["## credproxy soak: %.1f minutes, %d clients" % (args.minutes, args.concurrency), "",
           "| measure | value | target |", "|---|---|---|",
           "| proxy alive at the end | %s | yes |" % ("yes" if alive else "NO"),
           "| RSS after warm-up / end / peak (KiB) | %s / %s / %s | growth < %d |"
           % (rss0, rss1, hwm, TARGET_RSS_GROWTH_KIB),
           "| RSS growth (KiB) | %s | < %d |" % (growth, TARGET_RSS_GROWTH_KIB),
           "| open fds at start / after warm-up / end | %d / %d / %s | end = warm-up |"
           % (fds0, fds_warm, fds1),
           "| fds at the end by kind | %s | |" % kinds1,
           "| requests ok (2xx, body checked) | %d | |" % c["ok"],
           "| normal requests not ok | %d | (reported by cause below) |"
           % (c["non-2xx"] + c["failed (no response)"] + c["failed (cut)"] + c["failed (socket)"]
              + c["failed (connect)"]),
           "| faults injected, ended visibly | %d | all |" % c["fault visible"],
           "| client-side faults | %d | |" % c["client fault"],
           "| store faults (Redis killed) | %d | |" % c["store fault"],
           "| lost silently | %d | 0 |" % c["lost silently"],
           "| SIGHUP reloads sent / taken / refused | %d / %d / %d | all taken |"
           % (c["reloads"], reloads_ok, reloads_bad),
           "| audit lines | %d | |" % total_audit,
           "| a token in the proxy's output | %s | no |" % ("YES" if secret_seen else "no"),
           "| exit status after SIGTERM | %s | 0 |" % rc,
           "| sanitizer reports | %s | none |" % (sanitizer[:3] or "none"), ""]
    out.append("Client-side outcomes other than ok, by cause:")
    out.append("")
    for cause, n in sorted(stats.causes.items(), key=lambda kv: -kv[1]):
        out.append("- %d x %s" % (n, cause))
    out += ["", "Audit lines that are not 2xx or carry an error (mode status error):", ""]
    for cause, n in sorted(audit_bad.items(), key=lambda kv: -kv[1]):
        out.append("- %d x %s" % (n, cause))
    if stats.silent:
        out += ["", "Lost silently (first 20):", ""] + ["- " + x for x in stats.silent]
    out += ["", "Samples (minutes, RSS KiB, fds): %s" % samples]
    print("\n".join(out))
    missed = (not alive or growth is None or growth >= TARGET_RSS_GROWTH_KIB
              or c["lost silently"] > 0 or (fds1 is not None and fds1 > fds_warm)
              or reloads_ok != c["reloads"] or secret_seen or rc != 0 or sanitizer)
    env.close()
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""credproxy benchmark: credproxy side by side with nginx, HAProxy, Squid and mitmproxy.

Run through tests/bench/run.sh (it builds the release binary and the CONNECT
load client first). Everything runs on loopback high ports, from a temp dir,
and every process this script starts is stopped when it ends (also on ^C).

Sections (--sections, comma separated; default all):
  startup    time from exec to the listener accepting, credproxy
  memory     RSS idle and with 1,000 idle keep-alive clients (credproxy, nginx, HAProxy)
  http       gateway and forward (absolute-form) credproxy vs nginx, HAProxy, direct (wrk)
  intercept  CONNECT interception: credproxy vs Squid ssl-bump vs mitmproxy (cload),
             a new tunnel per request and keep-alive inside one tunnel
  stream     1 GiB download and upload through credproxy vs direct
  profile    perf record of the gateway under wrk: CPU microseconds per request by component
             (kernel, libssl+libcrypto, libevent, libc, llhttp, own code, other) for credproxy
             and nginx, then credproxy's top functions (DWARF call graphs)
  syscalls   strace -c -f per request: credproxy lean h1 engine (the default), credproxy
             libcurl (http2: true) and nginx, same wrk load (strace slows them; counts only)

Rounds alternate the variants (A/B/C, A/B/C, ...) and the table reports medians.
This is a benchmark, not a test: it exits 0 when it could measure, whatever the
numbers; targets are reported as met/missed. --quick: one short round, 64 MiB
streams, no profile (CI uses it to prove the harness still works).
"""

import argparse
import base64
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
EMAIL = "svc-bot@example.com"
SITE = "acme.atlassian.net"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
MIB = 1024 * 1024

# ---------------------------------------------------------------------------
# small helpers


def log(*a):
    sys.stderr.write(" ".join(str(x) for x in a) + "\n")
    sys.stderr.flush()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout=10.0, proc=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.001)
    return False


def children_map():
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        ppid = int(st[st.rindex(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    return kids


def tree(pid):
    kids = children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_seconds(pids):
    total = 0
    for p in pids:
        try:
            with open("/proc/%d/stat" % p) as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])  # utime + stime (all threads)
    return total / CLK_TCK


def status_kib(pid, key):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_mib(pids, key="VmRSS"):
    return sum(status_kib(p, key) for p in pids) / 1024.0


class RssSampler:
    """Samples the summed VmRSS of a process tree every 20 ms; .peak in MiB."""

    def __init__(self, pids):
        self.pids = pids
        self.peak = rss_mib(pids) if pids else 0.0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_mib(self.pids))

    def __enter__(self):
        if self.pids:
            self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self.pids:
            self._t.join()
            self.peak = max(self.peak, rss_mib(self.pids))


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, digits=1):
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    return ("%%.%df" % digits) % x


# ---------------------------------------------------------------------------
# the bench environment


class Bench:
    def __init__(self, args):
        self.args = args
        self.bin = args.bin
        self.cload = args.cload
        self.dir = tempfile.mkdtemp(prefix="credproxy-bench-")
        os.chmod(self.dir, 0o755)  # squid drops to the 'proxy' user and must read its files
        self.procs = {}
        self.token = "bench-" + secrets.token_hex(16)
        self.auth = "Basic " + base64.b64encode(("%s:%s" % (EMAIL, self.token)).encode()).decode()
        ncpu = os.cpu_count() or 1
        if args.no_pin or ncpu < 2:
            self.proxy_cpus, self.load_cpus = None, None
        else:
            self.proxy_cpus = args.proxy_cpus or "0"
            self.load_cpus = args.load_cpus or ",".join(str(i) for i in range(1, ncpu))
        self.port = {k: free_port() for k in (
            "up", "cp", "cp_gw", "cpa", "cpa_gw", "cp1", "cp1_gw", "ngx", "hap", "squid", "mitm")}
        self.notes = []
        self.results = {}

    # -- processes ----------------------------------------------------------
    def pin(self, cmd, which):
        if which == "any":
            return cmd
        cpus = self.proxy_cpus if which == "proxy" else self.load_cpus
        if cpus is None or shutil.which("taskset") is None:
            return cmd
        return ["taskset", "-c", cpus] + cmd

    def start(self, name, cmd, which="proxy", env=None, port=None, timeout=15):
        logf = open(os.path.join(self.dir, name + ".log"), "wb")
        e = dict(os.environ)
        e.update(env or {})
        t0 = time.monotonic()
        p = subprocess.Popen(self.pin(cmd, which), stdout=logf, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, env=e, start_new_session=True,
                             cwd=self.dir)
        self.procs[name] = p
        if port is not None and not wait_port(port, timeout, p):
            self.stop(name)
            with open(os.path.join(self.dir, name + ".log"), "rb") as f:
                tail = f.read()[-1500:].decode("utf-8", "replace").replace(self.token, "<TOKEN>")
            tail = tail.replace(self.auth, "<AUTH>")
            raise RuntimeError("%s did not start listening on %d:\n%s" % (name, port, tail))
        return p, time.monotonic() - t0

    def stop(self, name):
        p = self.procs.pop(name, None)
        if p is None:
            return
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(5)

    def stop_all(self):
        for name in list(self.procs):
            self.stop(name)

    def pids(self, name):
        p = self.procs.get(name)
        if p is None or p.poll() is not None:
            return []
        # taskset execs the program, so p.pid is the server itself (or its master)
        return tree(p.pid)

    def run(self, cmd, which="load", timeout=600):
        """which: "load" pins to the load CPUs, "proxy" to the proxy's, "any" runs unpinned."""
        return subprocess.run(self.pin(cmd, which), capture_output=True, text=True,
                              timeout=timeout, cwd=self.dir)

    # -- files --------------------------------------------------------------
    def path(self, *p):
        return os.path.join(self.dir, *p)

    def write(self, name, text, mode=0o600):
        with open(self.path(name), "w") as f:
            f.write(text)
        os.chmod(self.path(name), mode)
        return self.path(name)

    def openssl(self, *a):
        subprocess.run(["openssl"] + list(a), check=True, capture_output=True, cwd=self.dir)

    def make_ca(self, prefix, cn):
        self.openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", prefix + ".key")
        self.openssl("req", "-x509", "-new", "-key", prefix + ".key", "-out", prefix + ".pem",
                     "-days", "2", "-subj", "/CN=" + cn,
                     "-addext", "basicConstraints=critical,CA:TRUE",
                     "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def make_files(self):
        log("bench: work dir", self.dir)
        self.make_ca("upca", "credproxy bench upstream CA")
        self.openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "up.key")
        self.openssl("req", "-new", "-key", "up.key", "-out", "up.csr", "-subj", "/CN=" + SITE)
        self.write("up.ext", "subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth\n" % SITE)
        self.openssl("x509", "-req", "-in", "up.csr", "-CA", "upca.pem", "-CAkey", "upca.key",
                     "-CAcreateserial", "-days", "2", "-out", "up.pem", "-extfile", "up.ext")
        self.make_ca("squidca", "credproxy bench squid CA")
        os.makedirs(self.path("www", "upload"))
        body = {"accountId": "5b10a2844c20165700ede21g", "emailAddress": EMAIL,
                "displayName": "Service Bot", "active": True, "timeZone": "Europe/Berlin",
                "locale": "en_US", "self": "https://%s/rest/api/3/user?accountId=x" % SITE}
        s = json.dumps(body)
        s = s[:-1] + ', "pad": "' + "x" * (1024 - len(s) - 11) + '"}'
        assert len(s) == 1024, len(s)
        for n in ("auth.json", "x.json"):
            with open(self.path("www", n), "w") as f:
                f.write(s)
        with open(self.path("www", "big"), "wb") as f:
            f.truncate(self.args.stream_bytes)  # sparse: reading it costs nothing
        os.chmod(self.path("www"), 0o755)
        os.chmod(self.path("www", "upload"), 0o777)  # nginx workers run as www-data

    # -- servers ------------------------------------------------------------
    def start_upstream(self):
        d = self.dir
        conf = """
daemon off;
master_process on;
worker_processes 1;
pid {d}/up.pid;
error_log {d}/up-error.log warn;
worker_rlimit_nofile 16384;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {d}/up-body;
    proxy_temp_path {d}/up-proxy;
    fastcgi_temp_path {d}/up-fcgi; uwsgi_temp_path {d}/up-uwsgi; scgi_temp_path {d}/up-scgi;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    default_type application/json;
    server {{
        listen 127.0.0.1:{port} ssl http2 reuseport;
        server_name {site};
        ssl_certificate {d}/up.pem;
        ssl_certificate_key {d}/up.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        root {d}/www;
        location = /auth.json {{
            if ($http_authorization != "{auth}") {{ return 401; }}
        }}
        location /upload/ {{
            dav_methods PUT;
            client_max_body_size 0;
            client_body_buffer_size 1m;
        }}
        location = /big {{ default_type application/octet-stream; }}
    }}
}}
""".format(d=d, port=self.port["up"], site=SITE, auth=self.auth)
        self.write("up.conf", conf)
        self.start("upstream", ["nginx", "-c", self.path("up.conf"), "-p", d], which="load",
                   port=self.port["up"])

    def cp_config(self, name, listen, gw, audit=False, http2=False, intercept=True):
        extra = ""
        if intercept:
            extra = "interception:\n  ca_cert: %s\n  ca_key: %s\n" % (
                self.path("cpca", "ca.pem"), self.path("cpca", "ca.key"))
        return self.write(name + ".yaml", """listen: 127.0.0.1:{listen}
workers: {workers}
credentials:
  svc:
    email: {email}
    token_env: BENCH_ATLASSIAN_TOKEN
    rate_limit: off
sites:
  - domain: acme
    credential: svc
    listen: 127.0.0.1:{gw}
upstream:
  ca_file: {d}/upca.pem
  connect_to:
    - {site}:443:127.0.0.1:{up}
  http2: {h2}
{extra}log:
  level: warn
  audit: {audit}
""".format(listen=listen, gw=gw, email=EMAIL, d=self.dir, site=SITE, up=self.port["up"],
           workers=self.args.workers, extra=extra, audit="true" if audit else "false",
           h2="true" if http2 else "false"))

    def cp_env(self):
        return {"BENCH_ATLASSIAN_TOKEN": self.token}

    def start_credproxy(self):
        os.makedirs(self.path("cpca"))
        base = self.cp_config("cp-init", self.port["cp"], self.port["cp_gw"], intercept=False)
        r = subprocess.run([self.bin, "ca", "init", "--dir", self.path("cpca"), "-c", base],
                           capture_output=True, text=True, env=dict(os.environ, **self.cp_env()))
        if r.returncode != 0:
            raise RuntimeError("credproxy ca init failed: " + r.stderr[-500:])
        cfg = self.cp_config("cp", self.port["cp"], self.port["cp_gw"])
        # start to listening: the time until the main listener accepts a connection
        startups = []
        n = 1 if self.args.quick else 5
        for i in range(n):
            _, dt = self.start("credproxy", [self.bin, "run", "-c", cfg], env=self.cp_env(),
                               port=self.port["cp"])
            startups.append(dt * 1000)
            if i < n - 1:
                self.stop("credproxy")
        self.results["startup_ms"] = med(startups)
        if not wait_port(self.port["cp_gw"], 5):
            raise RuntimeError("credproxy site listener %d not up" % self.port["cp_gw"])

    def start_credproxy_variants(self):
        if self.args.quick:
            return
        cfg = self.cp_config("cpa", self.port["cpa"], self.port["cpa_gw"], audit=True,
                             intercept=False)
        self.start("credproxy-audit", [self.bin, "run", "-c", cfg], env=self.cp_env(),
                   port=self.port["cpa_gw"])
        # libcurl is the engine for upstream.http2: true (h2 to nginx)
        cfg = self.cp_config("cp1", self.port["cp1"], self.port["cp1_gw"], http2=True,
                             intercept=False)
        self.start("credproxy-curl", [self.bin, "run", "-c", cfg], env=self.cp_env(),
                   port=self.port["cp1_gw"])

    def start_nginx_proxy(self):
        d = self.dir
        conf = """
daemon off;
master_process on;
worker_processes {w};
pid {d}/ngx.pid;
error_log {d}/ngx-error.log warn;
worker_rlimit_nofile 16384;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {d}/ngx-body;
    proxy_temp_path {d}/ngx-proxy;
    fastcgi_temp_path {d}/ngx-fcgi; uwsgi_temp_path {d}/ngx-uwsgi; scgi_temp_path {d}/ngx-scgi;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    upstream acme {{
        server 127.0.0.1:{up};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port} reuseport;
        location / {{
            proxy_pass https://acme;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host {site};
            proxy_set_header Authorization "{auth}";
            proxy_set_header Cookie "";
            proxy_hide_header Set-Cookie;
            proxy_ssl_server_name on;
            proxy_ssl_name {site};
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate {d}/upca.pem;
            proxy_ssl_session_reuse on;
            proxy_buffering off;
            proxy_request_buffering off;
            client_max_body_size 0;
        }}
    }}
}}
""".format(d=d, w=self.args.workers, up=self.port["up"], port=self.port["ngx"], site=SITE,
           auth=self.auth)
        self.write("ngx.conf", conf)
        self.start("nginx", ["nginx", "-c", self.path("ngx.conf"), "-p", d], port=self.port["ngx"])

    def start_haproxy(self):
        conf = """
global
    nbthread {w}
    maxconn 8000
    ssl-server-verify required
defaults
    mode http
    timeout connect 10s
    timeout client 120s
    timeout server 120s
    timeout http-keep-alive 120s
    option http-keep-alive
frontend fe
    bind 127.0.0.1:{port}
    default_backend acme
backend acme
    http-reuse always
    http-request set-header Host {site}
    http-request set-header Authorization "{auth}"
    http-request del-header Cookie
    http-response del-header Set-Cookie
    server up 127.0.0.1:{up} ssl verify required ca-file {d}/upca.pem sni str({site}) verifyhost {site} alpn http/1.1
""".format(w=self.args.workers, port=self.port["hap"], site=SITE, auth=self.auth,
           up=self.port["up"], d=self.dir)
        self.write("hap.cfg", conf)
        self.start("haproxy", ["haproxy", "-db", "-f", self.path("hap.cfg")], port=self.port["hap"])

    def start_squid(self):
        sq = self.path("squid")
        os.makedirs(sq)
        for n in ("squidca.pem", "squidca.key", "upca.pem"):
            shutil.copy(self.path(n), os.path.join(sq, n))
        self.write("squid/hosts", "127.0.0.1 %s\n" % SITE, 0o644)
        certgen = "/usr/lib/squid/security_file_certgen"
        subprocess.run([certgen, "-c", "-s", os.path.join(sq, "ssl_db"), "-M", "16MB"],
                       check=True, capture_output=True)
        conf = """
http_port 127.0.0.1:{port} ssl-bump tls-cert={sq}/squidca.pem tls-key={sq}/squidca.key generate-host-certificates=on dynamic_cert_mem_cache_size=16MB
sslcrtd_program {certgen} -s {sq}/ssl_db -M 16MB
sslcrtd_children 4 startup=1 idle=1
ssl_bump bump all
tls_outgoing_options cafile={sq}/upca.pem
request_header_access Authorization deny all
request_header_add Authorization "{auth}" all
hosts_file {sq}/hosts
acl bench_clients src 127.0.0.1/32
http_access allow bench_clients
http_access deny all
cache deny all
cache_mem 8 MB
access_log none
cache_store_log none
cache_log {sq}/cache.log
pid_filename {sq}/squid.pid
coredump_dir {sq}
shutdown_lifetime 1 seconds
max_filedescriptors 16384
pinger_enable off
client_persistent_connections on
server_persistent_connections on
""".format(port=self.port["squid"], sq=sq, certgen=certgen, auth=self.auth)
        self.write("squid/squid.conf", conf, 0o644)
        subprocess.run(["chown", "-R", "proxy:proxy", sq], check=True)
        self.start("squid", ["squid", "-N", "-f", os.path.join(sq, "squid.conf")],
                   port=self.port["squid"], timeout=20)

    def start_mitmproxy(self):
        md = self.path("mitm")
        os.makedirs(md)
        addon = self.write("mitm/route.py", """
# Dials the bench upstream for {site} (no DNS here); the header is set by --modify-headers.
class Route:
    def server_connect(self, data):
        if data.server.address and data.server.address[0] == "{site}":
            data.server.address = ("127.0.0.1", {up})
            data.server.sni = "{site}"

addons = [Route()]
""".format(site=SITE, up=self.port["up"]))
        cmd = ["mitmdump", "-q", "--listen-host", "127.0.0.1", "-p", str(self.port["mitm"]),
               "--set", "confdir=" + md, "--set", "ssl_verify_upstream_trusted_ca=" +
               self.path("upca.pem"), "--set", "flow_detail=0",
               "--modify-headers", "/~q/Authorization/" + self.auth, "-s", addon]
        self.start("mitmproxy", cmd, port=self.port["mitm"], timeout=30)

    # -- load generators ----------------------------------------------------
    def wrk(self, url, duration, headers=(), script=None, conns=None):
        cmd = ["wrk", "-t1", "-c%d" % (conns or self.args.connections), "-d%ds" % duration,
               "--latency", "--timeout", "10s"]
        for h in headers:
            cmd += ["-H", h]
        if script:
            cmd += ["-s", script]
        cmd.append(url)
        r = self.run(cmd, timeout=duration + 60)
        out = r.stdout
        m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
        res = {"requests": int(m.group(1)) if m else 0, "errors": 0}
        m = re.search(r"Requests/sec:\s+([\d.]+)", out)
        res["rps"] = float(m.group(1)) if m else None
        for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
            m = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s)\s*$" % pct, out, re.M)
            if m:
                v = float(m.group(1))
                res[key] = v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v
        m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        if m:
            res["errors"] += int(m.group(1))
        m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
        if m:
            res["errors"] += sum(int(x) for x in m.groups())
        if res["rps"] is None:
            res["error_text"] = (out + r.stderr)[-300:]
        return res

    def cload_run(self, duration, target, proxy=None, addr=None, cafile=None, keep=False,
                  host=None, auth=None, conns=None):
        cmd = [self.cload, "-t", target, "-d", str(duration), "-u", "/auth.json",
               "-c", str(conns or self.args.tunnel_connections)]
        if proxy:
            cmd += ["-x", proxy]
        if addr:
            cmd += ["-a", addr]
        if cafile:
            cmd += ["-C", cafile]
        if host:
            cmd += ["-H", host]
        if auth:
            cmd += ["-A", auth]
        if keep:
            cmd.append("-k")
        r = self.run(cmd, timeout=duration + 60)
        try:
            res = json.loads(r.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return {"rps": None, "requests": 0, "errors": 1, "error_text": r.stderr[-300:]}
        if res["requests"] == 0:
            res["rps"] = None
            res["error_text"] = res.get("last_error", "")
        return res

    def measure(self, proc_name, fn):
        pids = self.pids(proc_name) if proc_name else []
        c0 = cpu_seconds(pids)
        with RssSampler(pids) as s:
            res = fn()
        c1 = cpu_seconds(pids)
        if pids and res.get("requests"):
            res["cpu_10k"] = (c1 - c0) / res["requests"] * 10000
        res["peak_rss"] = s.peak if pids else None
        return res

    # -- sanity: every variant answers 200 with the credential before it is timed
    def curl_ok(self, args):
        r = self.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5"]
                     + args)
        ok = r.returncode == 0 and r.stdout.strip() == "200"
        return ok, ("status %s, curl exit %d %s" % (r.stdout.strip(), r.returncode,
                                                     r.stderr.strip()[-200:]))


# ---------------------------------------------------------------------------
# sections


def rounds_of(b, variants, duration):
    """variants: list of (key, proc_name, fn(duration)) run alternately; returns key -> medians."""
    runs = {k: [] for k, _, _ in variants}
    for key, proc, fn in variants:  # warm-up: upstream pools, session caches, page cache
        fn(1)
    for r in range(b.args.rounds):
        for key, proc, fn in variants:
            res = b.measure(proc, lambda: fn(duration))
            runs[key].append(res)
            log("  round %d %-28s %8s req/s  p99 %s ms  errors %s%s" % (
                r + 1, key, fmt(res.get("rps")), fmt(res.get("p99_ms"), 2), res.get("errors"),
                ("  (" + res["error_text"].strip().replace("\n", " ")[:200] + ")")
                if res.get("error_text") else ""))
    out = {}
    for key, rs in runs.items():
        out[key] = {k: med([x.get(k) for x in rs]) for k in
                    ("rps", "p50_ms", "p99_ms", "cpu_10k")}
        out[key]["peak_rss"] = max([x.get("peak_rss") or 0 for x in rs]) or None
        out[key]["errors"] = sum(x.get("errors", 0) for x in rs)
        out[key]["requests"] = sum(x.get("requests", 0) for x in rs)
    return out


def section_http(b):
    log("bench: http (wrk, %d connections, %d s x %d rounds)" % (
        b.args.connections, b.args.duration, b.args.rounds))
    fwd = b.write("absolute.lua", 'wrk.path = "http://%s/auth.json"\n'
                  'wrk.headers["Host"] = "%s"\n' % (SITE, SITE), 0o644)
    up = b.port["up"]
    candidates = [
        ("direct (ceiling)", None, lambda d: b.wrk("https://127.0.0.1:%d/auth.json" % up, d,
                                                   headers=["Host: " + SITE,
                                                            "Authorization: " + b.auth])),
        ("nginx reverse proxy", "nginx",
         lambda d: b.wrk("http://127.0.0.1:%d/auth.json" % b.port["ngx"], d)),
        ("HAProxy", "haproxy", lambda d: b.wrk("http://127.0.0.1:%d/auth.json" % b.port["hap"], d)),
        ("credproxy gateway", "credproxy",
         lambda d: b.wrk("http://127.0.0.1:%d/auth.json" % b.port["cp_gw"], d)),
        ("credproxy forward", "credproxy",
         lambda d: b.wrk("http://127.0.0.1:%d/" % b.port["cp"], d, script=fwd)),
        ("credproxy gateway, audit on", "credproxy-audit",
         lambda d: b.wrk("http://127.0.0.1:%d/auth.json" % b.port["cpa_gw"], d)),
        ("credproxy gateway, libcurl h2 upstream", "credproxy-curl",
         lambda d: b.wrk("http://127.0.0.1:%d/auth.json" % b.port["cp1_gw"], d)),
    ]
    checks = {
        "direct (ceiling)": ["--http1.1", "--cacert", b.path("upca.pem"), "--connect-to",
                             "%s:443:127.0.0.1:%d" % (SITE, up), "-H", "Authorization: " + b.auth,
                             "https://%s/auth.json" % SITE],
        "nginx reverse proxy": ["http://127.0.0.1:%d/auth.json" % b.port["ngx"]],
        "HAProxy": ["http://127.0.0.1:%d/auth.json" % b.port["hap"]],
        "credproxy gateway": ["http://127.0.0.1:%d/auth.json" % b.port["cp_gw"]],
        "credproxy forward": ["-x", "http://127.0.0.1:%d" % b.port["cp"],
                              "http://%s/auth.json" % SITE],
        "credproxy gateway, audit on": ["http://127.0.0.1:%d/auth.json" % b.port["cpa_gw"]],
        "credproxy gateway, libcurl h2 upstream": ["http://127.0.0.1:%d/auth.json" %
                                                   b.port["cp1_gw"]],
    }
    variants = []
    for key, proc, fn in candidates:
        if proc is not None and proc not in b.procs:
            continue
        ok, why = b.curl_ok(checks[key])
        if not ok:
            b.notes.append("http: %s skipped: the sanity request did not get 200 (%s)" % (key, why))
            log("  skip", key, why)
            continue
        variants.append((key, proc, fn))
    res = rounds_of(b, variants, b.args.duration)
    b.results["http"] = res
    return res


def strace_summary(path):
    """syscall -> calls from an `strace -c` summary file."""
    calls = {}
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                # % time, seconds, usecs/call, calls, [errors,] syscall
                if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
                    calls[parts[-1]] = int(parts[3])
    except (OSError, ValueError):
        pass
    return calls


def section_syscalls(b):
    """System calls per request, counted by strace -c over the proxy's whole process."""
    if shutil.which("strace") is None:
        b.notes.append("syscalls: strace not installed")
        return {}
    log("bench: syscalls (strace -c -f, wrk -c8, %d s each)" % b.args.duration)
    fwd = b.write("absolute.lua", 'wrk.path = "http://%s/auth.json"\n'
                  'wrk.headers["Host"] = "%s"\n' % (SITE, SITE), 0o644)
    targets = [("credproxy gateway (lean h1 engine)", "credproxy",
                "http://127.0.0.1:%d/auth.json" % b.port["cp_gw"], None),
               ("credproxy forward (lean h1 engine)", "credproxy",
                "http://127.0.0.1:%d/" % b.port["cp"], fwd),
               ("credproxy gateway (libcurl, http2: true)", "credproxy-curl",
                "http://127.0.0.1:%d/auth.json" % b.port["cp1_gw"], None),
               ("nginx reverse proxy", "nginx", "http://127.0.0.1:%d/auth.json" % b.port["ngx"],
                None)]
    out = {}
    for key, proc, url, script in targets:
        if proc not in b.procs:
            continue
        path = b.path("strace-%s.txt" % proc)
        cmd = ["strace", "-c", "-f", "-o", path]
        for pid in b.pids(proc):
            cmd += ["-p", str(pid)]
        st = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        res = b.wrk(url, b.args.duration, conns=8, script=script)
        st.send_signal(signal.SIGINT)
        try:
            st.wait(30)
        except subprocess.TimeoutExpired:
            st.kill()
        calls = strace_summary(path)
        n = res.get("requests") or 0
        if not n or not calls:
            b.notes.append("syscalls: %s not measured (requests %d)" % (key, n))
            continue
        per = {k: v / n for k, v in calls.items()}
        out[key] = {"requests": n, "total": sum(per.values()),
                    "top": sorted(per.items(), key=lambda kv: -kv[1])[:8]}
    b.results["syscalls"] = out
    return out


def intercept_clients(b):
    """cload arguments for credproxy, Squid, mitmproxy and direct TLS (the interception tests)."""
    up = b.port["up"]
    cp = dict(target="%s:443" % SITE, proxy="127.0.0.1:%d" % b.port["cp"],
              cafile=b.path("cpca", "ca.pem"))
    # Squid dials the CONNECT port (its hosts_file maps the name), so the inner Host names it too
    sq = dict(target="%s:%d" % (SITE, up), proxy="127.0.0.1:%d" % b.port["squid"],
              cafile=b.path("squidca.pem"), host="%s:%d" % (SITE, up))
    mp = dict(target="%s:443" % SITE, proxy="127.0.0.1:%d" % b.port["mitm"],
              cafile=b.path("mitm", "mitmproxy-ca-cert.pem"))
    direct = dict(target="%s:%d" % (SITE, up), addr="127.0.0.1:%d" % up,
                  cafile=b.path("upca.pem"), auth=b.auth)
    return cp, sq, mp, direct


def section_intercept(b):
    log("bench: intercept (cload, %d connections, %d s x %d rounds)" % (
        b.args.tunnel_connections, b.args.duration, b.args.rounds))
    cp, sq, mp, direct = intercept_clients(b)
    variants = []
    for keep in (False, True):
        tag = "keep-alive in tunnel" if keep else "new tunnel per request"
        for name, proc, kw in (("direct TLS (ceiling)", None, direct), ("Squid ssl-bump", "squid", sq),
                               ("mitmproxy", "mitmproxy", mp), ("credproxy", "credproxy", cp)):
            if proc is not None and proc not in b.procs:
                continue
            key = "%s: %s" % (tag, name)
            conns = b.args.tunnel_connections
            probe = b.cload_run(0.5, keep=keep, conns=2, **kw)
            if not probe.get("rps"):
                b.notes.append("intercept: %s skipped: %s" % (key, probe.get("error_text", "")))
                log("  skip", key, probe.get("error_text"))
                continue
            variants.append((key, proc,
                             lambda d, kw=kw, keep=keep, conns=conns:
                             b.cload_run(d, keep=keep, conns=conns, **kw)))
    res = rounds_of(b, variants, b.args.duration)
    b.results["intercept"] = res
    return res


def idle_clients(port, count, host="127.0.0.1"):
    """Opens count keep-alive connections, one request each, and leaves them open."""
    socks = []
    req = ("GET /auth.json HTTP/1.1\r\nHost: %s\r\n\r\n" % host).encode()
    bad = 0
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(req)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        head, _, body = buf.partition(b"\r\n\r\n")
        m = re.search(rb"content-length:\s*(\d+)", head, re.I)
        want = int(m.group(1)) if m else 0
        while len(body) < want:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
        if not head.startswith(b"HTTP/1.1 200"):
            bad += 1
        socks.append(s)
    return socks, bad


def section_memory(b):
    log("bench: memory (idle, and %d idle keep-alive clients)" % b.args.idle_clients)
    out = {}
    for name, proc, port in (("credproxy", "credproxy", b.port["cp_gw"]),
                             ("nginx reverse proxy", "nginx", b.port["ngx"]),
                             ("HAProxy", "haproxy", b.port["hap"])):
        if proc not in b.procs:
            continue
        pids = b.pids(proc)
        idle = rss_mib(pids)
        idle_anon = rss_mib(pids, "RssAnon")
        socks, bad = [], 0
        try:
            socks, bad = idle_clients(port, b.args.idle_clients)
            time.sleep(0.5)
            loaded = rss_mib(b.pids(proc))
            loaded_anon = rss_mib(b.pids(proc), "RssAnon")
        except OSError as e:
            loaded = loaded_anon = None
            b.notes.append("memory: %s: idle clients failed: %s" % (name, e))
        finally:
            for s in socks:
                s.close()
        if bad:
            b.notes.append("memory: %s: %d of the idle clients' requests were not 200" % (name, bad))
        out[name] = {"idle": idle, "loaded": loaded, "processes": len(pids),
                     "idle_anon": idle_anon, "loaded_anon": loaded_anon}
        log("  %-22s idle %s MiB, with %d idle clients %s MiB" % (
            name, fmt(idle), b.args.idle_clients, fmt(loaded)))
        time.sleep(0.3)
    b.results["memory"] = out
    return out


def section_stream(b):
    size = b.args.stream_bytes
    log("bench: stream (%d MiB download and upload, %d rounds)" % (size // MIB, b.args.stream_rounds))
    up = b.port["up"]
    big = b.path("www", "big")
    direct = ["--http1.1", "--cacert", b.path("upca.pem"), "--connect-to", "%s:443:127.0.0.1:%d" % (SITE, up),
              "-H", "Authorization: " + b.auth]
    ways = [("direct", None, direct, "https://%s" % SITE),
            ("credproxy gateway", "credproxy", [], "http://127.0.0.1:%d" % b.port["cp_gw"]),
            ("credproxy forward", "credproxy", ["-x", "http://127.0.0.1:%d" % b.port["cp"]],
             "http://%s" % SITE),
            ("credproxy gateway, h1 upstream", "credproxy-h1up", [],
             "http://127.0.0.1:%d" % b.port["cp1_gw"]),
            ("nginx reverse proxy", "nginx", [], "http://127.0.0.1:%d" % b.port["ngx"])]
    out = {}
    limit = 20 if b.args.quick else 120  # seconds per transfer: a stalled proxy cannot hang the run
    for r in range(b.args.stream_rounds):
        for name, proc, extra, base in ways:
            if proc is not None and proc not in b.procs:
                continue
            for op in ("download", "upload"):
                key = (name, op)
                if op == "download":
                    cmd = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{time_total}",
                           "--max-time", str(limit)] + extra + [base + "/big"]
                else:
                    dest = "/upload/u-%s" % secrets.token_hex(4)
                    cmd = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{time_total}",
                           "--max-time", str(limit), "-H", "Expect:", "-T", big] + extra + [base + dest]
                pids = b.pids(proc) if proc else []
                before = rss_mib(pids) if pids else None
                c0 = cpu_seconds(pids)
                with RssSampler(pids) as s:
                    # unpinned: "direct" must be able to use both cores to be a ceiling
                    res = b.run(cmd, which="any", timeout=400)
                c1 = cpu_seconds(pids)
                parts = res.stdout.split()
                okc = parts and parts[0] in ("200", "201", "204")
                secs = float(parts[1]) if len(parts) > 1 else None
                mbps = size / MIB / secs if okc and secs else None
                ent = out.setdefault(key, {"mibps": [], "growth": [], "cpu": []})
                ent["mibps"].append(mbps)
                if pids:
                    ent["growth"].append(s.peak - before)
                    ent["cpu"].append(c1 - c0)
                if not okc:
                    b.notes.append("stream: %s %s failed: %s %s" % (name, op, res.stdout.strip(),
                                                                    res.stderr.strip()[-200:]))
                log("  round %d %-22s %-8s %s MiB/s%s" % (
                    r + 1, name, op, fmt(mbps), "" if not pids else
                    "  RSS growth %.1f MiB" % (s.peak - before)))
                if op == "upload":
                    for f in os.listdir(b.path("www", "upload")):
                        os.unlink(b.path("www", "upload", f))
    res = {k: {"mibps": med(v["mibps"]), "growth": max(v["growth"]) if v["growth"] else None,
               "cpu": med(v["cpu"])} for k, v in out.items()}
    b.results["stream"] = res
    return res


# Where a request's CPU time goes, by the shared object (and, inside the
# binary, the symbol) that perf's samples land in.
PROFILE_COMPONENTS = ("kernel (syscalls, network)", "libssl + libcrypto", "libevent",
                      "libc (malloc, locks, strings)", "llhttp", "own code", "other")


# libc's thin system-call wrappers: a sample there is the system call's (the sampling
# interrupt is taken as the kernel returns, which on a VM lands on the wrapper).
SYSCALL_WRAPPERS = {"read", "write", "readv", "writev", "recv", "send", "recvfrom", "sendto",
                    "recvmsg", "sendmsg", "epoll_wait", "epoll_ctl", "epoll_pwait", "ioctl",
                    "accept4", "accept", "close", "connect", "getsockopt", "setsockopt",
                    "shutdown", "socket", "syscall", "clock_gettime", "futex"}


def syscall_wrapper(name):
    base = name.split("@", 1)[0]
    for prefix in ("__GI___libc_", "__GI___", "__libc_", "__"):
        if base.startswith(prefix):
            base = base[len(prefix):]
            break
    return base in SYSCALL_WRAPPERS


def profile_component(dso, name, own):
    """Index into PROFILE_COMPONENTS for a sample in dso at symbol name; own: the server's binary."""
    d = os.path.basename(dso)
    if d.startswith("[kernel") or d in ("[vdso]", "[vsyscall]"):
        return 0
    if d.startswith(("libssl.", "libcrypto.")):
        return 1
    if d.startswith("libevent"):
        return 2
    if d.startswith(("libc.", "libc-", "ld-linux", "libm.", "libpthread")):
        return 0 if syscall_wrapper(name) else 3
    if d == own:
        # llhttp is linked into credproxy statically: its generated parser is llhttp__internal_*
        return 4 if name.startswith("llhttp") else 5
    return 6


def perf_components(data, own, cwd):
    """(share per component, {component: [(symbol, share)]}) from a perf.data, self time."""
    r = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort",
                        "dso,sym", "-g", "none", "--percent-limit", "0", "-t", "|"],
                       capture_output=True, text=True, cwd=cwd, timeout=300)
    shares = [0.0] * len(PROFILE_COMPONENTS)
    syms = [{} for _ in PROFILE_COMPONENTS]
    for ln in r.stdout.splitlines():
        parts = ln.split("|", 2)
        if ln.startswith("#") or len(parts) != 3 or not parts[0].strip().endswith("%"):
            continue
        pct, dso, sym = (x.strip() for x in parts)
        name = sym.split("] ", 1)[-1].strip()
        k = profile_component(dso, name, own)
        v = float(pct.rstrip("%"))
        shares[k] += v
        syms[k][name] = syms[k].get(name, 0.0) + v
    total = sum(shares)
    if not total:
        return None, None
    tops = {PROFILE_COMPONENTS[k]: sorted(((n, v / total) for n, v in syms[k].items()),
                                          key=lambda kv: -kv[1])[:4]
            for k in range(len(PROFILE_COMPONENTS))}
    return [x / total for x in shares], tops


def perf_run(b, proc, load, extra, data):
    """
    perf record over proc's process tree while the load runs: a URL (wrk) or a function of
    the duration returning {"requests": N, ...} (cload). (requests, CPU seconds) or None.
    """
    pids = b.pids(proc)
    if not pids:
        return None
    perf = subprocess.Popen(["perf", "record", "-o", data, "-p", ",".join(str(p) for p in pids)]
                            + extra, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=b.dir)
    time.sleep(0.5)
    c0 = cpu_seconds(pids)
    res = load(b.args.duration) if callable(load) else b.wrk(load, b.args.duration)
    c1 = cpu_seconds(pids)
    perf.send_signal(signal.SIGINT)
    try:
        _, err = perf.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        perf.kill()
        err = b""
    if not os.path.exists(data) or not res.get("requests"):
        b.notes.append("profile: perf record of %s failed: %s" % (
            proc, err.decode(errors="replace")[-300:]))
        return None
    return res["requests"], c1 - c0


def section_profile(b):
    """
    perf record of the gateway under wrk: CPU per request split by component
    (share of the samples x the process tree's CPU seconds / requests), for
    credproxy and, as the reference, nginx; then credproxy's top functions
    from a run with DWARF call graphs.
    """
    if shutil.which("perf") is None:
        b.notes.append("profile: perf not installed")
        return None
    log("bench: profile (perf record on the gateway, %d s per run)" % b.args.duration)
    split = {}
    targets = [("credproxy gateway", "credproxy", "credproxy",
                "http://127.0.0.1:%d/auth.json" % b.port["cp_gw"]),
               ("nginx reverse proxy", "nginx", "nginx",
                "http://127.0.0.1:%d/auth.json" % b.port["ngx"])]
    # interception, keep-alive inside the tunnel (cload), next to Squid ssl-bump
    cp, sq, _, _ = intercept_clients(b)
    conns = b.args.tunnel_connections
    for key, proc, kw in (("credproxy interception", "credproxy", cp),
                          ("Squid ssl-bump", "squid", sq)):
        if proc in b.procs and os.path.exists(kw["cafile"]):
            targets.append((key, proc, proc, lambda d, kw=kw: b.cload_run(
                d, keep=True, conns=conns, **kw)))
    runs = {}
    # rounds alternate the servers like the http section; each reports its median round (by
    # total us/request) whole, so its components add up
    for r in range(b.args.rounds):
        for i, (key, proc, own, load) in enumerate(targets):
            if proc not in b.procs:
                continue
            # no call graph here: the lightest sampling, so the CPU seconds stay the server's own
            data = b.path("perf-split-%d.data" % i)
            run = perf_run(b, proc, load, ["-F", "1999"], data)
            if not run:
                continue
            shares, tops = perf_components(data, own, b.dir)
            if shares is None:
                continue
            n, cpu = run
            us = cpu * 1e6 / n
            runs.setdefault(key, []).append(
                {"requests": n, "cpu_s": cpu, "us_per_req": us, "shares": shares,
                 "us": [x * us for x in shares], "tops": tops})
            log("  round %d %-22s %.1f us/request: %s" % (r + 1, key, us, ", ".join(
                "%s %.1f" % (c.split(" ")[0], x * us)
                for c, x in zip(PROFILE_COMPONENTS, shares))))
    for key, rs in runs.items():
        rs.sort(key=lambda x: x["us_per_req"])
        split[key] = rs[(len(rs) - 1) // 2]
        split[key]["rounds"] = [x["us_per_req"] for x in rs]

    data = b.path("perf.data")
    # DWARF unwinding: the release build has no frame pointers
    run = perf_run(b, "credproxy", "http://127.0.0.1:%d/auth.json" % b.port["cp_gw"],
                   ["--call-graph", "dwarf,16384", "-F", "499"], data)
    prof = {"split": split}
    if run:
        def report_lines(*extra):
            r = subprocess.run(["perf", "report", "-i", data, "--stdio", "-g", "none"]
                               + list(extra), capture_output=True, text=True, cwd=b.dir,
                               timeout=300)
            return [ln.rstrip() for ln in r.stdout.splitlines()
                    if ln.strip() and not ln.startswith("#")]
        prof["dso"] = report_lines("--no-children", "--sort", "dso")[:10]
        prof["top"] = report_lines("--no-children", "--sort", "dso,sym", "--percent-limit",
                                   "0.7")[:25]
        # inclusive time of named functions (credproxy's, libevent's, libcurl's exported ones)
        prof["incl"] = [ln for ln in report_lines("--children", "--sort", "sym", "--percent-limit",
                                                  "1.5")
                        if "0x0000" not in ln and "[k]" not in ln and "100.00%" not in ln][:30]
        if b.args.keep_perf:
            shutil.copy(data, b.args.out + ".perf.data")
    b.results["profile"] = prof
    return prof


# ---------------------------------------------------------------------------
# the report


def table_rows(group, ref_key, res):
    ref = (res.get(ref_key) or {}).get("rps")
    rows = []
    for key, v in res.items():
        ratio = (v["rps"] / ref) if (ref and v.get("rps")) else None
        rows.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
            key, fmt(v.get("rps"), 0), fmt(v.get("p50_ms"), 2), fmt(v.get("p99_ms"), 2),
            fmt(v.get("cpu_10k"), 2), fmt(v.get("peak_rss")),
            (fmt(ratio, 2) + "x") if ratio else "-", v.get("errors", 0)))
    return rows


def target(ok, what, detail):
    return "| %s | %s | %s |" % (what, "met" if ok else ("MISSED" if ok is False else "n/a"),
                                 detail)


def report(b):
    a = b.args
    L = []
    L.append("# credproxy benchmark")
    L.append("")
    uname = os.uname()
    L.append("%s, %s %s, %d CPUs; credproxy workers: %d; proxy CPUs: %s, load+upstream CPUs: %s; "
             "%d round(s) of %d s alternating; wrk -t1 -c%d; cload -c%d%s." % (
                 time.strftime("%Y-%m-%d %H:%M"), uname.sysname, uname.release, os.cpu_count(),
                 a.workers, b.proxy_cpus or "any", b.load_cpus or "any", a.rounds, a.duration,
                 a.connections, a.tunnel_connections, " (--quick)" if a.quick else ""))
    L.append("Upstream: nginx, TLS (ECDSA P-256), serving a 1 KiB JSON; every proxy sets "
             "`Authorization` and the upstream refuses requests without it. "
             "CPU = user+system seconds of the proxy's whole process tree per 10,000 requests; "
             "peak RSS = summed over that tree. Values are medians over the rounds.")
    L.append("")
    hdr = ["| mode | req/s | p50 ms | p99 ms | CPU s/10k req | peak RSS MiB | vs %s | errors |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    if "http" in b.results:
        L.append("## Gateway and forward mode (plain HTTP in, TLS upstream)")
        L.append("")
        L += [hdr[0] % "nginx", hdr[1]]
        L += table_rows("http", "nginx reverse proxy", b.results["http"])
        L.append("")
    if "intercept" in b.results:
        L.append("## Interception (CONNECT, TLS terminated by the proxy)")
        L.append("")
        L += [hdr[0] % "Squid", hdr[1]]
        res = b.results["intercept"]
        for tag in ("new tunnel per request", "keep-alive in tunnel"):
            sub = {k: v for k, v in res.items() if k.startswith(tag)}
            L += table_rows("intercept", tag + ": Squid ssl-bump", sub)
        L.append("")
    if "stream" in b.results:
        L.append("## Streaming (%d MiB)" % (a.stream_bytes // MIB))
        L.append("")
        L.append("| path | direction | MiB/s | vs direct | proxy peak RSS growth MiB | proxy CPU s |")
        L.append("|---|---|---:|---:|---:|---:|")
        res = b.results["stream"]
        for (name, op), v in res.items():
            d = res.get(("direct", op), {}).get("mibps")
            ratio = v["mibps"] / d if (d and v["mibps"]) else None
            L.append("| %s | %s | %s | %s | %s | %s |" % (
                name, op, fmt(v["mibps"], 0), ("%.0f%%" % (ratio * 100)) if ratio else "-",
                fmt(v["growth"]), fmt(v["cpu"], 2)))
        L.append("")
    if "memory" in b.results:
        L.append("## Memory (RSS, whole process tree)")
        L.append("")
        L.append("| server | processes | idle MiB | idle anon MiB | with %d idle keep-alive "
                 "clients MiB | same, anon MiB |" % a.idle_clients)
        L.append("|---|---:|---:|---:|---:|---:|")
        for name, v in b.results["memory"].items():
            L.append("| %s | %d | %s | %s | %s | %s |" % (
                name, v["processes"], fmt(v["idle"]), fmt(v["idle_anon"]), fmt(v["loaded"]),
                fmt(v["loaded_anon"])))
        L.append("")
        L.append("RSS includes shared library pages (counted once per process); anon = "
                 "RssAnon, the process's own heap and stacks.")
        L.append("")
    if b.results.get("syscalls"):
        L.append("## System calls per request (strace -c -f, wrk -c8; strace slows every "
                 "server, so only the counts mean anything)")
        L.append("")
        L.append("| server | requests | syscalls/request | top calls per request |")
        L.append("|---|---:|---:|---|")
        for name, v in b.results["syscalls"].items():
            L.append("| %s | %d | %s | %s |" % (name, v["requests"], fmt(v["total"], 1),
                                               ", ".join("%s %s" % (k, fmt(x, 2))
                                                         for k, x in v["top"])))
        L.append("")
    if b.results.get("startup_ms") is not None:
        L.append("Start to listening (credproxy, exec until the listener accepts): **%.1f ms**." %
                 b.results["startup_ms"])
        L.append("")

    # targets
    T = []
    http = b.results.get("http", {})
    ng = http.get("nginx reverse proxy", {})
    gw = http.get("credproxy gateway", {})

    def ratio(x, y):
        return (x / y) if (x is not None and y) else None
    # issue 14: CPU per request <= 1.2x nginx's and req/s >= 0.9x nginx's, gateway and forward
    for mode in ("gateway", "forward"):
        v = http.get("credproxy " + mode, {})
        if not ng or not v:
            continue
        r = ratio(v.get("rps"), ng.get("rps"))
        T.append(target(r >= 0.9 if r is not None else None,
                        "%s req/s >= 0.9x nginx" % mode, "%sx" % fmt(r, 2)))
        c = ratio(v.get("cpu_10k"), ng.get("cpu_10k"))
        T.append(target(c <= 1.2 if c is not None else None,
                        "%s CPU/request <= 1.2x nginx" % mode, "%sx nginx's" % fmt(c, 2)))
    if ng and gw:
        p = ratio(gw.get("p99_ms"), ng.get("p99_ms"))
        T.append(target(p is not None and p <= 1.0 if p is not None else None,
                        "gateway p99 <= nginx", "%s ms vs %s ms" % (
                            fmt(gw.get("p99_ms"), 2), fmt(ng.get("p99_ms"), 2))))
    ic = b.results.get("intercept", {})
    for tag in ("new tunnel per request", "keep-alive in tunnel"):
        c = ic.get(tag + ": credproxy", {}).get("rps")
        s = ic.get(tag + ": Squid ssl-bump", {}).get("rps")
        m = ic.get(tag + ": mitmproxy", {}).get("rps")
        if c is not None and s:
            T.append(target(c >= s, "interception (%s) >= Squid" % tag, "%sx" % fmt(c / s, 2)))
        if c is not None and m:
            T.append(target(c >= 10 * m, "interception (%s) >= 10x mitmproxy" % tag,
                            "%sx" % fmt(c / m, 1)))
    st = b.results.get("stream", {})
    for op in ("download", "upload"):
        d = st.get(("direct", op), {}).get("mibps")
        g = st.get(("credproxy gateway", op), {})
        if d and g.get("mibps"):
            T.append(target(g["mibps"] >= 0.7 * d, "stream %s >= 70%% of direct" % op,
                            "%.0f%%" % (100 * g["mibps"] / d)))
        if g.get("growth") is not None:
            T.append(target(g["growth"] < 16, "stream %s RSS growth < 16 MiB" % op,
                            "%s MiB" % fmt(g["growth"])))
    mem = b.results.get("memory", {}).get("credproxy")
    if mem:
        T.append(target(mem["idle"] < 8, "RSS idle < 8 MiB", "%s MiB" % fmt(mem["idle"])))
        if mem["loaded"] is not None:
            T.append(target(mem["loaded"] < 32, "RSS with %d idle clients < 32 MiB" %
                            a.idle_clients, "%s MiB" % fmt(mem["loaded"])))
    if b.results.get("startup_ms") is not None:
        T.append(target(b.results["startup_ms"] < 50, "start to listening < 50 ms",
                        "%.1f ms" % b.results["startup_ms"]))
    if T:
        L.append("## Targets")
        L.append("")
        L.append("| target | result | measured |")
        L.append("|---|---|---|")
        L += T
        L.append("")
    prof = b.results.get("profile")
    split = (prof or {}).get("split")
    if split:
        names = list(split)
        L.append("## Where the CPU goes: microseconds per request (perf record -F 1999, self "
                 "time): gateway under wrk, interception keep-alive under cload")
        L.append("")
        L.append("Each component's share of the samples times the process tree's CPU seconds "
                 "(user+system) over the run, divided by the requests it served. Own code is "
                 "the server's binary; llhttp is linked into credproxy's binary and counted "
                 "apart; libcurl (not on this path) would count as other. Samples in libc's "
                 "system-call wrappers (read, writev, epoll_wait, ...) count as kernel: the "
                 "sampling interrupt is taken as the kernel returns.")
        L.append("")
        L.append("| component | " + " | ".join("%s us/req | share" % n for n in names) + " |")
        L.append("|---|" + "---:|---:|" * len(names))
        for k, comp in enumerate(PROFILE_COMPONENTS):
            L.append("| %s | %s |" % (comp, " | ".join(
                "%.2f | %.0f%%" % (split[n]["us"][k], 100 * split[n]["shares"][k])
                for n in names)))
        L.append("| **total** | %s |" % " | ".join(
            "**%.2f** | %d req, %.2f CPU s" % (split[n]["us_per_req"], split[n]["requests"],
                                                split[n]["cpu_s"]) for n in names))
        L.append("")
        L.append("Total us/request in each round (the median round is shown): %s." % "; ".join(
            "%s %s" % (n, ", ".join("%.1f" % x for x in split[n]["rounds"])) for n in names))
        L.append("")
        for n in names:
            L.append("Largest symbols per component, %s: %s." % (n, "; ".join(
                "%s: %s" % (comp, ", ".join("%s %.1f%%" % (sym, 100 * v)
                                            for sym, v in split[n]["tops"][comp][:3]))
                for comp in PROFILE_COMPONENTS if split[n]["tops"].get(comp))))
            L.append("")
    if prof and prof.get("top"):
        L.append("## Profile: credproxy gateway under wrk (perf, self time)")
        L.append("")
        L.append("```")
        L.append("self time by shared object:")
        L += prof["dso"]
        L.append("")
        L.append("self time by function:")
        L += prof["top"]
        L.append("")
        L.append("named functions, inclusive (children) time:")
        L += prof.get("incl", [])
        L.append("```")
        L.append("")
    if b.notes:
        L.append("## Notes")
        L.append("")
        L += ["- " + n.replace(b.auth, "<AUTH>").replace(b.token, "<TOKEN>") for n in b.notes]
        L.append("")
    text = "\n".join(L)
    return text.replace(b.auth, "<AUTH>").replace(b.token, "<TOKEN>")


# ---------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--bin", required=True, help="credproxy binary")
    ap.add_argument("--cload", required=True, help="the cload CONNECT load client")
    ap.add_argument("--out", required=True, help="markdown file to write")
    ap.add_argument("--quick", action="store_true", help="one short round (CI smoke run)")
    ap.add_argument("--sections",
                    default="startup,memory,http,intercept,stream,profile,syscalls")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--duration", type=int, help="seconds per timed run")
    ap.add_argument("--connections", type=int, default=64, help="wrk connections")
    ap.add_argument("--tunnel-connections", type=int, default=16, help="cload connections")
    ap.add_argument("--idle-clients", type=int, default=1000)
    ap.add_argument("--stream-mib", type=int)
    ap.add_argument("--stream-rounds", type=int)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--proxy-cpus", help="taskset list for the proxies (default 0)")
    ap.add_argument("--load-cpus", help="taskset list for load generators and upstream")
    ap.add_argument("--no-pin", action="store_true")
    ap.add_argument("--keep-perf", action="store_true")
    a = ap.parse_args()
    a.rounds = a.rounds or (1 if a.quick else 5)
    a.duration = a.duration or (1 if a.quick else 4)
    a.stream_bytes = (a.stream_mib or (64 if a.quick else 1024)) * MIB
    a.stream_rounds = a.stream_rounds or (1 if a.quick else 3)
    sections = set(a.sections.split(","))
    if a.quick:
        sections.discard("profile")
        a.idle_clients = min(a.idle_clients, 200)

    b = Bench(a)

    def on_signal(signum, frame):
        raise KeyboardInterrupt()
    signal.signal(signal.SIGTERM, on_signal)
    t0 = time.monotonic()
    failed = None
    try:
        b.make_files()
        b.start_upstream()
        for starter, label in ((b.start_credproxy, "credproxy"),
                               (b.start_credproxy_variants, "credproxy variants"),
                               (b.start_nginx_proxy, "nginx"), (b.start_haproxy, "HAProxy"),
                               (b.start_squid, "Squid"), (b.start_mitmproxy, "mitmproxy")):
            if label == "mitmproxy" and "intercept" not in sections:
                continue
            if label == "Squid" and not sections & {"intercept", "profile"}:
                continue
            try:
                starter()
            except (RuntimeError, OSError, subprocess.CalledProcessError) as e:
                msg = str(e).replace(b.auth, "<AUTH>").replace(b.token, "<TOKEN>")
                b.notes.append("%s could not start: %s" % (label, msg.strip().splitlines()[0]
                                                           if msg.strip() else "?"))
                log("bench: %s could not start:\n%s" % (label, msg))
        for name, fn in (("memory", section_memory), ("http", section_http),
                         ("intercept", section_intercept), ("stream", section_stream),
                         ("profile", section_profile), ("syscalls", section_syscalls)):
            if name in sections:
                try:
                    fn(b)
                except (RuntimeError, OSError, subprocess.SubprocessError, KeyError) as e:
                    b.notes.append("section %s failed: %s" % (name, e))
                    log("bench: section %s failed: %s" % (name, e))
    except KeyboardInterrupt:
        failed = "interrupted"
    finally:
        b.stop_all()
    b.notes.append("total time %.0f s" % (time.monotonic() - t0))
    if "startup" not in sections:
        b.results.pop("startup_ms", None)
    text = report(b)
    with open(a.out, "w") as f:
        f.write(text + "\n")
    print(text)
    log("bench: wrote %s (work dir %s)" % (a.out, b.dir))
    if not a.keep_perf:
        pass
    if os.environ.get("BENCH_KEEP_DIR") is None:
        shutil.rmtree(b.dir, ignore_errors=True)
    if failed:
        return 130
    measured = any(b.results.get(k) for k in ("http", "intercept", "stream", "memory", "profile",
                                              "syscalls"))
    return 0 if measured else 1


if __name__ == "__main__":
    sys.exit(main())

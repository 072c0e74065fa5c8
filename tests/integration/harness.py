"""Shared helpers for credproxy's integration tests (Debian /usr/bin/python3, stdlib + requests).

A test file looks like:

    import harness as h

    @h.test
    def forward_myself(env):
        env.start_fake()
        env.start_proxy(sites=[{"domain": "acme", "credential": "svc"}])
        r = env.curl_proxy("http://acme.atlassian.net/rest/api/3/myself")
        h.check(r.status == 200, "myself through the proxy", r)

    if __name__ == "__main__":
        h.main()

Every test gets a fresh Env (temp dir, fresh fake, its own proxy); processes are
killed and the logs checked for secrets when it ends, pass or fail. Each test
is bounded by signal.alarm (TEST_TIMEOUT, or @h.test(timeout=N)) and the file by
FILE_TIMEOUT. The output ends with "N passed, M failed"; the exit status is 1
when anything failed. Nothing here prints a secret: every message goes through
redact().
"""

import atexit
import base64
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # tests/ for fake_atlassian
import fake_atlassian  # noqa: E402

SOURCE_DIR = os.environ.get("CREDPROXY_SOURCE_DIR", os.path.dirname(os.path.dirname(HERE)))
BIN = os.environ.get("CREDPROXY_BIN", os.path.join(SOURCE_DIR, "build", "credproxy"))
TEST_TIMEOUT = int(os.environ.get("CREDPROXY_TEST_TIMEOUT", "60"))
FILE_TIMEOUT = 280
EMAIL = "svc-bot@example.com"
# A fresh fake token per run, so a leak check cannot pass by accident.
TOKEN = "ATATT3xFfGF0-itest-" + os.urandom(12).hex()
BASIC = fake_atlassian.basic_value(EMAIL, TOKEN)
B64 = BASIC[len("Basic "):]
SITE_HOSTS = ["acme.atlassian.net", "acme-sandbox.atlassian.net", "jira.example.org"]
EXTRA_HOSTS = [fake_atlassian.MEDIA_HOST, "unknown.atlassian.net", "evil-acme.atlassian.net",
               "acme.atlassian.net.evil.com", "nonexistent.invalid", "localhost",
               fake_atlassian.GATEWAY_HOST, fake_atlassian.AUTH_HOST]
# Names the connect_to list maps to the fake (nonexistent.invalid stays unmapped: DNS failure).
MAPPED_HOSTS = SITE_HOSTS + [fake_atlassian.MEDIA_HOST, "unknown.atlassian.net",
                             "evil-acme.atlassian.net", "acme.atlassian.net.evil.com",
                             fake_atlassian.GATEWAY_HOST, fake_atlassian.AUTH_HOST]

_results = {"passed": 0, "failed": 0}
_tests = []
_current = {"failures": None, "env": None}


# ---------------------------------------------------------------------------
# checks and output
def redact(text):
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    text = str(text)
    for s in (BASIC, B64, TOKEN):
        text = text.replace(s, "<REDACTED>")
    return text


def log(*parts):
    sys.stdout.write(redact(" ".join(str(p) for p in parts)) + "\n")
    sys.stdout.flush()


def check(cond, what, got=None):
    """Record one check; never raises. Returns cond so callers can stop early."""
    if not cond:
        msg = "  FAIL: %s" % what
        if got is not None:
            g = redact(got)
            msg += "\n        got: %s" % (g if len(g) < 2000 else g[:2000] + "...")
        log(msg)
        if _current["failures"] is not None:
            _current["failures"].append(what)
    return bool(cond)


class Skip(Exception):
    pass


def test(fn=None, timeout=TEST_TIMEOUT):
    def reg(f):
        _tests.append((f, timeout))
        return f
    return reg(fn) if fn is not None else reg


class _Timeout(BaseException):
    pass


def _on_alarm(signum, frame):
    raise _Timeout()


def main():
    only = sys.argv[1:]
    signal.signal(signal.SIGALRM, _on_alarm)
    deadline = time.monotonic() + FILE_TIMEOUT
    if not os.access(BIN, os.X_OK):
        log("credproxy binary not found at %s (set CREDPROXY_BIN)" % BIN)
    for fn, timeout in _tests:
        if only and fn.__name__ not in only:
            continue
        left = deadline - time.monotonic()
        if left <= 1:
            log("FAIL %s: file time budget exhausted" % fn.__name__)
            _results["failed"] += 1
            continue
        _current["failures"] = []
        t0 = time.monotonic()
        env = Env(fn.__name__)
        _current["env"] = env
        skipped = False
        try:
            signal.alarm(max(1, int(min(timeout, left))))
            fn(env)
        except Skip as e:
            skipped = True
            log("SKIP %s: %s" % (fn.__name__, e))
        except _Timeout:
            check(False, "test timed out after %ds" % timeout)
        except Exception:
            check(False, "exception: " + traceback.format_exc())
        finally:
            signal.alarm(0)
            try:
                signal.alarm(20)
                env.close()
            except _Timeout:
                check(False, "cleanup timed out")
            except Exception:
                check(False, "cleanup: " + traceback.format_exc())
            finally:
                signal.alarm(0)
        dt = time.monotonic() - t0
        if skipped:
            continue
        if _current["failures"]:
            _results["failed"] += 1
            log("FAIL %s (%.1fs)" % (fn.__name__, dt))
            env.dump_logs()
        else:
            _results["passed"] += 1
            log("ok   %s (%.1fs)" % (fn.__name__, dt))
        if not _current["failures"]:
            shutil.rmtree(env.dir, ignore_errors=True)
    log("%d passed, %d failed" % (_results["passed"], _results["failed"]))
    sys.exit(1 if _results["failed"] else 0)


# ---------------------------------------------------------------------------
# TLS material (made once per process with the openssl CLI, in a temp dir)
_tls_cache = {}


def make_tls(dirpath, hosts=None):
    """Throwaway CA + one server cert. Returns dict(ca, cert, key, other_ca)."""
    key = tuple(hosts or ())
    if key in _tls_cache and os.path.exists(_tls_cache[key]["ca"]):
        return _tls_cache[key]
    hosts = list(hosts or (SITE_HOSTS + EXTRA_HOSTS))
    d = tempfile.mkdtemp(prefix="credproxy-tls-")
    san = ",".join(["DNS:%s" % x for x in hosts] + ["IP:127.0.0.1"])

    def run(*args):
        subprocess.run(["openssl"] + list(args), cwd=d, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=30)
    for ca in ("ca", "other-ca"):
        run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", ca + ".key", "-out", ca + ".pem", "-days", "2", "-subj",
            "/CN=credproxy test %s" % ca, "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
        "srv.key", "-out", "srv.csr", "-subj", "/CN=acme.atlassian.net")
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n" % san)
    run("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "srv.pem", "-days", "2", "-extfile", "ext.cnf")
    out = {"dir": d, "ca": os.path.join(d, "ca.pem"), "cert": os.path.join(d, "srv.pem"),
           "key": os.path.join(d, "srv.key"), "other_ca": os.path.join(d, "other-ca.pem")}
    _tls_cache[key] = out
    atexit.register(shutil.rmtree, d, True)
    return out


_HANDED_OUT = set()


def free_port():
    """A free loopback port, never one this process handed out before: the kernel may
    give the same ephemeral port to two binds in a row once the first socket is closed,
    which made admin and listen collide now and then."""
    for _ in range(100):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        p = s.getsockname()[1]
        s.close()
        if p not in _HANDED_OUT:
            _HANDED_OUT.add(p)
            return p
    raise AssertionError("no fresh free port after 100 tries")


# ---------------------------------------------------------------------------
# tiny YAML emitter (strings are JSON-quoted, which YAML accepts)
def to_yaml(obj, indent=0):
    pad = " " * indent
    lines = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v:
                lines.append("%s%s:" % (pad, k))
                lines.append(to_yaml(v, indent + 2))
            else:
                lines.append("%s%s: %s" % (pad, k, _scalar(v)))
    elif isinstance(obj, list):
        for v in obj:
            if isinstance(v, dict) and v:
                inner = to_yaml(v, indent + 2).split("\n")
                lines.append("%s- %s" % (pad, inner[0].lstrip()))
                lines.extend(inner[1:])
            else:
                lines.append("%s- %s" % (pad, _scalar(v)))
    return "\n".join(lines)


def _scalar(v):
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "null"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, (list, dict)):
        return json.dumps(v)
    return json.dumps(str(v))


# ---------------------------------------------------------------------------
# HTTP on raw sockets
class _HeadersAndBody:
    """What every response object offers: .headers (name, value) pairs and .body."""

    def header(self, name, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return None


class Response(_HeadersAndBody):
    def __init__(self, status=None, headers=None, body=b"", raw=b"", error=None):
        self.status = status
        self.headers = headers or []
        self.body = body
        self.raw = raw
        self.error = error

    def __repr__(self):
        b = self.body[:600]
        return "<Response %s %s body=%r%s>" % (self.status, self.headers, b,
                                              " error=%s" % self.error if self.error else "")


def read_response(sock, buf=b"", head_only=False):
    """Read one response from sock; returns (Response, leftover bytes). Never raises on EOF."""
    raw = bytearray(buf)
    while b"\r\n\r\n" not in raw:
        try:
            data = sock.recv(65536)
        except socket.timeout:
            return Response(raw=bytes(raw), error="timeout in head"), b""
        except OSError as e:
            return Response(raw=bytes(raw), error="recv: %s" % e), b""
        if not data:
            return Response(raw=bytes(raw), error="eof in head"), b""
        raw += data
    head, rest = bytes(raw).split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    try:
        status = int(parts[1])
    except (IndexError, ValueError):
        return Response(raw=bytes(raw), error="bad status line"), b""
    headers = []
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        headers.append((k.strip(), v.strip()))
    r = Response(status, headers)
    if 100 <= status < 200:
        return r, rest
    te = (r.header("transfer-encoding") or "").lower()
    cl = r.header("content-length")
    body = bytearray()
    rest = bytearray(rest)

    def more():
        try:
            d = sock.recv(65536)
        except (socket.timeout, OSError):
            return False
        if not d:
            return False
        rest.extend(d)
        return True
    if head_only or status in (204, 304):
        pass
    elif "chunked" in te:
        while True:
            while b"\r\n" not in rest:
                if not more():
                    r.error = "eof in chunked body"
                    r.body = bytes(body)
                    return r, b""
            line, _, tail = bytes(rest).partition(b"\r\n")
            size = int(line.split(b";")[0], 16)
            rest = bytearray(tail)
            if size == 0:
                while b"\r\n" not in rest:
                    if not more():
                        break
                rest = rest[rest.find(b"\r\n") + 2:] if b"\r\n" in rest else bytearray()
                break
            while len(rest) < size + 2:
                if not more():
                    r.error = "eof in chunk"
                    r.body = bytes(body + rest)
                    return r, b""
            body += rest[:size]
            rest = rest[size + 2:]
    elif cl is not None:
        n = int(cl)
        while len(rest) < n:
            if not more():
                r.error = "eof in sized body"
                break
        body, rest = rest[:n], rest[n:]
    else:
        while more():
            pass
        body, rest = rest, bytearray()
    r.body = bytes(body)
    r.raw = head + b"\r\n\r\n"
    return r, bytes(rest)


def raw_request(port, data, timeout=10.0, host="127.0.0.1", nresponses=1):
    """Send raw bytes, read up to nresponses responses. Returns a list of Response."""
    out = []
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(data)
        buf = b""
        for _ in range(nresponses):
            r, buf = read_response(s, buf)
            out.append(r)
            if r.status is None:
                break
    return out


def raw_one(port, data, timeout=10.0):
    return raw_request(port, data, timeout=timeout)[0]


def connection_closed(sock, timeout=3.0):
    """True when the peer closes sock within timeout (after we read and drop whatever comes)."""
    sock.settimeout(timeout)
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            d = sock.recv(65536)
            if not d:
                return True
    except socket.timeout:
        return False
    except OSError:
        return True
    return False


# ---------------------------------------------------------------------------
def clean_env(extra=None):
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
           and not k.startswith(("ATLASSIAN_", "CREDPROXY_CONFIG"))}
    env.update(extra or {})
    return env


def vmhwm_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return None


def vmrss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


class Proc:
    """A process started by a test; killed (whole group) at cleanup."""

    def __init__(self, args, env, out_path, err_path, cwd=None):
        self.args = args
        self.out_path, self.err_path = out_path, err_path
        self._out = open(out_path, "wb")
        self._err = open(err_path, "wb")
        self.p = subprocess.Popen(args, env=env, stdout=self._out, stderr=self._err,
                                  stdin=subprocess.DEVNULL, cwd=cwd, start_new_session=True)
        self.pid = self.p.pid

    def alive(self):
        return self.p.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        """Send sig, wait; returns the exit status (None when it had to be killed)."""
        if self.p.poll() is None:
            try:
                os.kill(self.p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        return self.p.returncode

    def kill(self):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                try:
                    self.p.kill()
                except ProcessLookupError:
                    pass
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self._out.close()
        self._err.close()

    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stdout(self):
        with open(self.out_path, "rb") as f:
            return f.read().decode("utf-8", "replace")


class Env:
    """Per-test state: temp dir, TLS, the fake, the proxy and its config."""

    def __init__(self, name):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix="credproxy-%s-" % name)
        self.tls = make_tls(self.dir)
        self.fake = None
        self.proxy = None
        self.procs = []
        self.port = None
        self.config_path = None
        self.extra_texts = []
        self._nproc = 0

    # -- the fake --
    def start_fake(self, sites=None, **switches):
        if sites is None:
            sites = fake_atlassian.default_sites(EMAIL, TOKEN)
        self.fake = fake_atlassian.FakeAtlassian(
            self.tls["cert"], self.tls["key"], os.path.join(self.dir, "fake"), sites=sites,
            control_port=None, **switches).start()
        return self.fake

    def connect_to(self, hosts=None, port=443, fake_port=None):
        fp = fake_port or self.fake.port
        out = []
        for host in hosts or MAPPED_HOSTS:
            out.append("%s:%d:127.0.0.1:%d" % (host, port, fp))
            out.append("%s:80:127.0.0.1:%d" % (host, fp))  # plain-http tunnel mode
        return out

    # -- the proxy config --
    def config(self, sites=None, unknown_hosts=None, token_env=False, listen=None, upstream=None,
               extra=None, credentials=None):
        if self.port is None:
            self.port = free_port()
        token_path = os.path.join(self.dir, "token")
        with open(token_path, "w") as f:
            f.write(TOKEN + "\n")
        os.chmod(token_path, 0o600)
        cred = {"type": "basic", "email": EMAIL}
        if token_env:
            cred["token_env"] = "ITEST_ATLASSIAN_TOKEN"
        else:
            cred["token_file"] = token_path
        cred["rate_limit"] = "off"
        cfg = {"listen": listen or "127.0.0.1:%d" % self.port,
               "credentials": credentials or {"svc": cred},
               "sites": sites if sites is not None else [{"domain": "acme", "credential": "svc"}]}
        if unknown_hosts:
            cfg["unknown_hosts"] = unknown_hosts
        up = {"ca_file": self.tls["ca"]}
        if self.fake is not None:
            up["connect_to"] = self.connect_to()
        up.update(upstream or {})
        cfg["upstream"] = up
        cfg["log"] = {"level": "debug", "audit": True}
        cfg.update(extra or {})
        self.config_path = os.path.join(self.dir, "credproxy.yaml")
        with open(self.config_path, "w") as f:
            f.write(to_yaml(cfg) + "\n")
        return self.config_path

    def start_proxy(self, wait=True, args=None, env=None, port=None, **cfg_kw):
        """Write the config (cfg_kw as for config()) and start `credproxy run -c`."""
        if args is None:
            if port is not None:
                self.port = port
            self.config(**cfg_kw)
            args = ["run", "-c", self.config_path]
        e = clean_env({"ITEST_ATLASSIAN_TOKEN": TOKEN})
        e.update(env or {})
        self.proxy = self.spawn([BIN] + args, env=e)
        if wait:
            self.wait_listen(self.port, proc=self.proxy)
        return self.proxy

    def spawn(self, args, env=None, cwd=None):
        self._nproc += 1
        n = self._nproc
        p = Proc(args, env if env is not None else clean_env(), os.path.join(self.dir, "p%d.out" % n),
                 os.path.join(self.dir, "p%d.err" % n), cwd=cwd)
        self.procs.append(p)
        return p

    def wait_listen(self, port, proc=None, timeout=10.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if proc is not None and not proc.alive():
                raise AssertionError("proxy exited with %s before listening; stderr:\n%s"
                                     % (proc.p.returncode, redact(proc.stderr()[-3000:])))
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return True
            except OSError:
                time.sleep(0.05)
        raise AssertionError("nothing listens on 127.0.0.1:%d after %.0fs" % (port, timeout))

    def stop_proxy(self, expect=0):
        if self.proxy is None:
            return None
        rc = self.proxy.stop()
        check(rc == expect, "proxy exits %s on SIGTERM" % expect, rc)
        return rc

    # -- clients --
    def curl(self, args, timeout=20, env=None, input=None):
        """Run curl; returns CurlResult (status, headers, body, rc, stderr)."""
        hfile = os.path.join(self.dir, "curl-h-%d" % time.monotonic_ns())
        bfile = hfile.replace("curl-h-", "curl-b-")
        cmd = ["curl", "-sS", "-D", hfile, "-o", bfile, "--max-time", str(timeout)] + list(args)
        p = subprocess.run(cmd, env=clean_env(env), capture_output=True, timeout=timeout + 10,
                           input=input)
        res = CurlResult(p.returncode, p.stderr.decode("utf-8", "replace"))
        if os.path.exists(hfile):
            with open(hfile, "rb") as f:
                res.parse_heads(f.read())
            os.unlink(hfile)
        if os.path.exists(bfile):
            with open(bfile, "rb") as f:
                res.body = f.read()
            os.unlink(bfile)
        self.extra_texts.append(res.stderr)
        return res

    def curl_proxy(self, url, *args, **kw):
        return self.curl(["-x", "http://127.0.0.1:%d" % self.port, url] + list(args), **kw)

    def curl_gateway(self, path, host=None, *args, **kw):
        a = ["http://127.0.0.1:%d%s" % (self.port, path)]
        if host:
            a += ["-H", "Host: %s" % host]
        return self.curl(a + list(args), **kw)

    # -- assertions --
    def assert_no_secret(self, *texts):
        """The token, base64(email:token) and the Authorization value appear nowhere."""
        all_texts = list(texts) + self.extra_texts
        for p in self.procs:
            all_texts += [p.stdout(), p.stderr()]
        for i, t in enumerate(all_texts):
            if isinstance(t, bytes):
                t = t.decode("latin-1")
            for s, name in ((TOKEN, "token"), (B64, "base64(email:token)"), (BASIC, "Authorization")):
                check(s not in str(t), "secret (%s) absent from output #%d" % (name, i))

    def assert_no_auth_to(self, hosts=None):
        """The media host and unmapped hosts never received an Authorization header."""
        if self.fake is None:
            return
        hosts = hosts or [h for h in MAPPED_HOSTS if h not in SITE_HOSTS]
        for r in self.fake.records():
            if fake_atlassian.creds_is_gateway_request(self.fake, r):
                continue  # api.atlassian.com/ex/{product}/{a site's cloudId}/: that site's
            if r["host"] in hosts or r["site"] is None:
                check(r["authorization"] is None and "media_authorization" not in r["flags"],
                      "no Authorization reached %s (%s %s)" % (r["host"], r["method"], r["path"]))

    def dump_logs(self):
        for p in self.procs:
            err = p.stderr()
            if err:
                log("---- stderr of %s (last 40 lines)" % os.path.basename(p.args[0]))
                log("\n".join(err.splitlines()[-40:]))

    def close(self):
        for p in self.procs:
            p.kill()
        try:
            self.assert_no_secret()
            self.assert_no_auth_to()
        finally:
            if self.fake is not None:
                self.fake.stop()


class CurlResult(_HeadersAndBody):
    def __init__(self, rc, stderr):
        self.rc = rc
        self.stderr = stderr
        self.status = None
        self.headers = []
        self.body = b""
        self.all_heads = []

    def parse_heads(self, raw):
        blocks = [b for b in raw.decode("latin-1").split("\r\n\r\n") if b.strip()]
        for b in blocks:
            lines = b.split("\r\n")
            try:
                status = int(lines[0].split(" ")[1])
            except (IndexError, ValueError):
                continue
            hdrs = []
            for ln in lines[1:]:
                k, _, v = ln.partition(":")
                hdrs.append((k.strip(), v.strip()))
            self.all_heads.append((status, hdrs))
        if self.all_heads:
            self.status, self.headers = self.all_heads[-1]

    def __repr__(self):
        return "<curl rc=%s status=%s headers=%s body=%r stderr=%r>" % (
            self.rc, self.status, self.headers, self.body[:600], self.stderr[-400:])


def header_of(headers, name):
    """Value of a header in a [[name, value], ...] list (the fake's records), or None."""
    for k, v in headers:
        if k.lower() == name.lower():
            return v
    return None


def headers_named(headers, name):
    return [v for k, v in headers if k.lower() == name.lower()]


def proxy_error(resp, status, code):
    """Checks the proxy's own error shape: status, X-Credproxy-Error and the JSON body."""
    if not check(resp.status == status, "status %d (%s)" % (status, code), resp):
        return False
    ok = check(resp.header("X-Credproxy-Error") == code, "X-Credproxy-Error: %s" % code, resp)
    body = resp.json() if hasattr(resp, "json") else None
    ok &= check(isinstance(body, dict) and body.get("error") == code
                and isinstance(body.get("message"), str), "JSON error body {error: %s}" % code, resp)
    return ok


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def basic(email, token):
    return "Basic " + base64.b64encode(("%s:%s" % (email, token)).encode()).decode()


@contextlib.contextmanager
def thread(fn, *args):
    """Run fn in a daemon thread; yields a dict that gets 'result' or 'error'."""
    box = {}

    def run():
        try:
            box["result"] = fn(*args)
        except Exception as e:  # noqa: BLE001
            box["error"] = e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        yield box
    finally:
        t.join(30)

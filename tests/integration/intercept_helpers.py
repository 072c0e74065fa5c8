"""Shared by the test_intercept_*.py files: a fake, a config with interception files
in the test's own dir, `credproxy ca init`, the proxy, and CONNECT by hand."""

import json
import os
import socket
import subprocess

import harness as h

SITES = [{"domain": "acme", "credential": "svc"},
         {"host": "jira.example.org", "credential": "svc"}]


def setup(env, sites=None, unknown_hosts=None, ca=True, ca_sites=None):
    """Fake + config with interception files in env.dir/certs; ca init; proxy started."""
    env.start_fake()
    certs = os.path.join(env.dir, "certs")
    extra = {"interception": {"ca_cert": os.path.join(certs, "ca.pem"),
                              "ca_key": os.path.join(certs, "ca.key")}}
    if ca:
        env.config(sites=ca_sites or sites or SITES, unknown_hosts=unknown_hosts, extra=extra)
        p = subprocess.run([h.BIN, "ca", "init", "-c", env.config_path, "--dir", certs],
                           env=h.clean_env(), capture_output=True, timeout=30)
        h.check(p.returncode == 0, "credproxy ca init exits 0", p.stderr)
        h.check(oct(os.stat(os.path.join(certs, "ca.key")).st_mode & 0o777) == "0o600",
                "ca.key is 0600")
    env.config(sites=sites or SITES, unknown_hosts=unknown_hosts, extra=extra)
    env.start_proxy(args=["run", "-c", env.config_path])
    return certs


def env_json(env):
    p = subprocess.run([h.BIN, "env", "-c", env.config_path, "--format", "json"],
                       env=h.clean_env(), capture_output=True, timeout=30)
    h.check(p.returncode == 0, "credproxy env exits 0", p.stderr)
    return json.loads(p.stdout)


def tunnel(env, target, timeout=10):
    """CONNECT target through the proxy; returns (socket, Response)."""
    s = socket.create_connection(("127.0.0.1", env.port), timeout=timeout)
    s.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, target)).encode())
    r, rest = h.read_response(s, head_only=True)
    if r.status == 200:
        h.check(rest == b"", "nothing after the CONNECT response 200", rest)
        return s, r
    # A refusal carries a body (the proxy's JSON error): read it by its length.
    n = int(r.header("content-length") or 0)
    body = bytearray(rest)
    s.settimeout(timeout)
    while len(body) < n:
        d = s.recv(65536)
        if not d:
            break
        body += d
    r.body = bytes(body[:n])
    return s, r



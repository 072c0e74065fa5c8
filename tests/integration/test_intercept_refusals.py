#!/usr/bin/python3
"""What interception refuses: an SNI or inner Host that is not the CONNECT
host, CONNECT to unmapped hosts (deny: 403; tunnel: a blind tunnel to the
fake's own certificate, never intercepted, no credential added), no CA yet
(403 naming `credproxy ca init`), and a CA made for other sites (startup
warning, 403 for the uncovered site)."""

import os
import ssl
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from intercept_helpers import SITES, setup, tunnel  # noqa: E402


def tls_ctx(cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


@h.test
def sni_mismatch(env):
    certs = setup(env)
    ca = os.path.join(certs, "ca.pem")
    # Control: the right SNI completes the handshake.
    s, r = tunnel(env, "acme.atlassian.net:443")
    h.check(r.status == 200, "CONNECT acme: 200", r)
    with tls_ctx(ca).wrap_socket(s, server_hostname="acme.atlassian.net"):
        pass
    # Another mapped site's name as SNI inside the acme tunnel.
    for sni in ("jira.example.org", "evil.example.com"):
        s, r = tunnel(env, "acme.atlassian.net:443")
        ctx = tls_ctx(ca)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        try:
            with ctx.wrap_socket(s, server_hostname=sni) as t:
                t.sendall(b"GET /rest/api/3/myself HTTP/1.1\r\nHost: acme.atlassian.net\r\n\r\n")
                resp, _ = h.read_response(t)
                h.check(False, "handshake with SNI %s inside an acme tunnel refused" % sni, resp)
        except (ssl.SSLError, OSError) as e:
            h.check("UNRECOGNIZED_NAME" in str(e).upper() or isinstance(e, ssl.SSLError),
                    "refused with a TLS alert (SNI %s)" % sni, e)
    # openssl s_client, as an operator would try it (-proxy sends the CONNECT).
    for sni, ok in (("acme.atlassian.net", True), ("jira.example.org", False)):
        p = subprocess.run(["openssl", "s_client", "-proxy", "127.0.0.1:%d" % env.port,
                            "-connect", "acme.atlassian.net:443", "-servername", sni,
                            "-CAfile", ca, "-verify_return_error", "-brief"],
                           input=b"", capture_output=True, timeout=20)
        out = (p.stdout + p.stderr).decode("utf-8", "replace")
        if ok:
            h.check(p.returncode == 0 and "Verification: OK" in out,
                    "s_client with the right SNI verifies", out[-1500:])
        else:
            # The alert is unrecognized_name; a proxy that closes at once may lose it (EOF).
            h.check(p.returncode != 0 and "Verification: OK" not in out and
                    ("unrecognized name" in out or "unexpected eof" in out),
                    "s_client with SNI %s: handshake refused" % sni, out[-1500:])
    recs = [x for x in env.fake.records() if x["path"] == "/rest/api/3/myself"]
    h.check(recs == [], "nothing reached the fake", len(recs))


@h.test
def inner_host_mismatch(env):
    certs = setup(env)
    s, r = tunnel(env, "acme.atlassian.net:443")
    h.check(r.status == 200, "CONNECT acme: 200", r)
    with tls_ctx(os.path.join(certs, "ca.pem")).wrap_socket(
            s, server_hostname="acme.atlassian.net") as t:
        t.sendall(b"GET /rest/api/3/myself HTTP/1.1\r\nHost: jira.example.org\r\n\r\n")
        resp, _ = h.read_response(t)
        h.check(resp.status is not None and 400 <= resp.status < 500,
                "inner Host naming another site refused", resp)
        h.check(resp.header("X-Credproxy-Error") is not None, "a proxy error, not Atlassian's",
                resp)
    recs = [x for x in env.fake.records() if x["path"] == "/rest/api/3/myself"]
    h.check(recs == [], "nothing reached the fake (neither site)", recs)


@h.test
def connect_unmapped_deny(env):
    setup(env)
    s, r = tunnel(env, "unknown.atlassian.net:443")
    s.close()
    h.proxy_error(r, 403, "host_not_allowed")
    s, r = tunnel(env, "acme.atlassian.net:8443")
    s.close()
    h.check(r.status == 403, "mapped host on another port is not the site", r)
    h.check(env.fake.records() == [], "the fake saw nothing")


@h.test
def connect_unmapped_tunnel(env):
    setup(env, unknown_hosts="tunnel")
    s, r = tunnel(env, "unknown.atlassian.net:443")
    h.check(r.status == 200, "CONNECT to an unmapped host in tunnel mode: 200", r)
    # The fake's own certificate (test CA) verifies: nothing was intercepted.
    with tls_ctx(env.tls["ca"]).wrap_socket(s, server_hostname="unknown.atlassian.net") as t:
        cert = t.getpeercert()
        issuer = dict(x[0] for x in cert.get("issuer", ()))
        h.check("credproxy test ca" in issuer.get("commonName", ""),
                "the client sees the fake's own certificate", cert)
        t.sendall(b"GET /__echo HTTP/1.1\r\nHost: unknown.atlassian.net\r\n"
                  b"Connection: close\r\n\r\n")
        resp, _ = h.read_response(t)
        h.check(resp.status == 200, "request through the blind tunnel", resp)
    recs = env.fake.records(host="unknown.atlassian.net")
    h.check(len(recs) == 1 and recs[0]["authorization"] is None,
            "no Authorization added in a blind tunnel", recs)
    # A mapped host in tunnel mode is still intercepted (with the local CA, not the fake's).
    s, r = tunnel(env, "acme.atlassian.net:443")
    try:
        with tls_ctx(env.tls["ca"]).wrap_socket(s, server_hostname="acme.atlassian.net"):
            h.check(False, "mapped host must not be blind-tunnelled")
    except ssl.SSLError:
        pass


@h.test
def no_ca_yet(env):
    setup(env, ca=False)
    s, r = tunnel(env, "acme.atlassian.net:443")
    s.close()
    h.proxy_error(r, 403, "interception_off")
    msg = (r.json() or {}).get("message", "")
    h.check("credproxy ca init" in msg, "the message says to run credproxy ca init", msg)
    # env still prints the proxy variables and says the same.
    p = subprocess.run([h.BIN, "env", "-c", env.config_path], env=h.clean_env(),
                       capture_output=True, timeout=20)
    out = p.stdout.decode()
    h.check(p.returncode == 0 and "export HTTPS_PROXY='http://127.0.0.1:%d'" % env.port in out,
            "env without a CA still prints HTTPS_PROXY", out)
    h.check("credproxy ca init" in out and "SSL_CERT_FILE" not in out,
            "env without a CA: a note, no trust variables", out)


@h.test
def ca_for_other_sites(env):
    certs = setup(env, ca_sites=[{"host": "jira.example.org", "credential": "svc"}])
    err = env.proxy.stderr()
    h.check("acme.atlassian.net" in err and "ca init --force" in err,
            "startup warning names the uncovered site and the fix", err[-2000:])
    s, r = tunnel(env, "acme.atlassian.net:443")
    s.close()
    h.check(r.status == 403, "uncovered site: CONNECT refused", r)
    s, r = tunnel(env, "jira.example.org:443")
    h.check(r.status == 200, "covered site still intercepted", r)
    with tls_ctx(os.path.join(certs, "ca.pem")).wrap_socket(
            s, server_hostname="jira.example.org") as t:
        t.sendall(b"GET /rest/api/3/myself HTTP/1.1\r\nHost: jira.example.org\r\n"
                  b"Connection: close\r\n\r\n")
        resp, _ = h.read_response(t)
        h.check(resp.status == 200, "request on the covered site", resp)


@h.test
def ca_init_refuses_overwrite(env):
    env.start_fake()
    certs = os.path.join(env.dir, "certs")
    env.config(sites=SITES)
    run = lambda *a: subprocess.run([h.BIN, "ca", "init", "-c", env.config_path, "--dir", certs]
                                    + list(a), env=h.clean_env(), capture_output=True, timeout=30)
    p = run()
    h.check(p.returncode == 0, "first ca init: 0", p.stderr)
    with open(os.path.join(certs, "ca.pem"), "rb") as f:
        first = f.read()
    p = run()
    h.check(p.returncode == 1 and b"--force" in p.stderr, "second ca init: 1, mentions --force", p)
    p = run("--force")
    h.check(p.returncode == 0, "ca init --force: 0", p.stderr)
    with open(os.path.join(certs, "ca.pem"), "rb") as f:
        h.check(f.read() != first, "--force replaced the CA")
    with open(os.path.join(certs, "ca.key"), "rb") as f:
        key = f.read()
    h.check(key.count(b"BEGIN") == 1, "ca.key holds one key (the intermediate's)")
    p = subprocess.run(["openssl", "x509", "-in", os.path.join(certs, "ca.pem"), "-noout", "-ext",
                        "nameConstraints"], capture_output=True, timeout=10)
    out = p.stdout.decode()
    h.check("critical" in out and "DNS:atlassian.net" in out and "DNS:jira.example.org" in out
            and "IP:0.0.0.0/0.0.0.0" in out, "openssl shows the constraints", out)


if __name__ == "__main__":
    h.main()

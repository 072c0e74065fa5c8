#!/usr/bin/python3
"""HTTPS interception with real clients (mode 2: HTTPS_PROXY + CONNECT).

`credproxy ca init` makes the CA, the proxy mints leaves, and each client
trusts the local CA the way `credproxy env` says: curl (--cacert and
`credproxy exec`), Python requests (one Session, one tunnel, 20 POSTs of
different sizes), Node 20 (CONNECT by hand + NODE_EXTRA_CA_CERTS). Every
request that reaches the fake must carry the site's Authorization and an
intact body; the client must see the local CA's leaf, never the fake's.
"""

import hashlib
import json
import os
import ssl
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from intercept_helpers import env_json, setup, tunnel  # noqa: E402

def myself_records(env, host="acme.atlassian.net"):
    return [r for r in env.fake.records(host=host) if r["path"] == "/rest/api/3/myself"]


@h.test
def curl_with_cacert(env):
    certs = setup(env)
    r = env.curl_proxy("https://acme.atlassian.net/rest/api/3/myself", "--cacert",
                       os.path.join(certs, "ca.pem"), timeout=15)
    h.check(r.rc == 0 and r.status == 200, "myself over CONNECT with --cacert ca.pem", r)
    body = r.json() or {}
    h.check(body.get("displayName"), "the fake's account came back", r)
    recs = myself_records(env)
    h.check(len(recs) == 1 and recs[0]["authorization"] == h.BASIC,
            "exactly one upstream request, carrying the site's credential",
            [x["authorization"] is not None for x in recs])
    h.check(recs and recs[0]["tls"] and recs[0]["sni"] == "acme.atlassian.net",
            "upstream over TLS with SNI acme.atlassian.net", recs)
    # The client saw the local CA's leaf, not the fake's certificate.
    r2 = env.curl_proxy("https://acme.atlassian.net/rest/api/3/myself", "--cacert", env.tls["ca"],
                        timeout=15)
    h.check(r2.rc == 60, "the fake's own CA does not verify the intercepting leaf (curl 60)", r2)
    # Other mapped site, host: form.
    r3 = env.curl_proxy("https://jira.example.org/rest/api/3/myself", "--cacert",
                        os.path.join(certs, "ca.pem"), timeout=15)
    h.check(r3.status == 200, "host: site intercepted too", r3)


@h.test
def leaf_is_exact(env):
    certs = setup(env)
    s, r = tunnel(env, "acme.atlassian.net:443")
    h.check(r.status == 200, "CONNECT to a mapped site: 200", r)
    ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with ctx.wrap_socket(s, server_hostname="acme.atlassian.net") as t:
        cert = t.getpeercert()
        h.check(cert.get("subjectAltName") == (("DNS", "acme.atlassian.net"),),
                "SAN is exactly DNS:acme.atlassian.net", cert)
        issuer = dict(x[0] for x in cert.get("issuer", ()))
        h.check("credproxy local intermediate" in issuer.get("commonName", ""),
                "issued by the local intermediate", cert)
        h.check(t.selected_alpn_protocol() == "http/1.1", "ALPN http/1.1 (never h2)",
                t.selected_alpn_protocol())
        h.check(t.version() in ("TLSv1.2", "TLSv1.3"), "TLS 1.2+", t.version())
        t.sendall(b"GET /rest/api/3/myself HTTP/1.1\r\nHost: acme.atlassian.net\r\n"
                  b"Connection: close\r\n\r\n")
        resp, _ = h.read_response(t)
        h.check(resp.status == 200, "request inside the tunnel", resp)


@h.test(timeout=90)
def requests_session_one_tunnel(env):
    import requests
    import urllib3.util.connection as uconn
    setup(env)
    e = env_json(env)["env"]
    # What an agent gets from `credproxy env`. Passed per request: requests lets a
    # REQUESTS_CA_BUNDLE in the environment override Session.verify.
    proxies = {"https": e["HTTPS_PROXY"]}
    bundle = e["REQUESTS_CA_BUNDLE"]
    opened = []
    real = uconn.create_connection

    def counting(address, *a, **kw):
        opened.append(address)
        return real(address, *a, **kw)
    uconn.create_connection = counting
    sizes = [0, 1, 2, 100, 1023, 1024, 4095, 4096, 16383, 16384, 16385, 32768, 65535, 65536,
             65537, 100000, 262144, 500001, 1048576, 3 * 1048576 + 7]
    try:
        with requests.Session() as sess:
            for i, n in enumerate(sizes):
                data = hashlib.sha256(b"%d" % i).digest() * (n // 32 + 1)
                data = data[:n]
                r = sess.post("https://acme.atlassian.net/__upload?i=%d" % i, data=data,
                              headers={"Content-Type": "application/octet-stream"}, timeout=15,
                              proxies=proxies, verify=bundle)
                ok = h.check(r.status_code == 200, "POST %d bytes: 200" % n, r.text[:300])
                if ok:
                    body = r.json()
                    h.check(body.get("length") == n and body.get("sha256") ==
                            hashlib.sha256(data).hexdigest(), "POST %d bytes arrived intact" % n,
                            body)
    finally:
        uconn.create_connection = real
    h.check(len(opened) == 1, "one TCP connection (one CONNECT tunnel) for 20 POSTs", opened)
    recs = [r for r in env.fake.records(host="acme.atlassian.net") if r["path"] == "/__upload"]
    h.check(len(recs) == len(sizes), "every POST reached the fake once", len(recs))
    h.check(all(r["authorization"] == h.BASIC for r in recs), "every POST carried the credential",
            [r["authorization"] is not None for r in recs])
    h.check(sorted(r["body_len"] for r in recs) == sorted(sizes), "body lengths as sent",
            [r["body_len"] for r in recs])


NODE_SCRIPT = r"""
const http = require('http'), https = require('https'), tls = require('tls');
const [proxyPort, host, path] = process.argv.slice(2);
const req = http.request({host: '127.0.0.1', port: +proxyPort, method: 'CONNECT',
                          path: host + ':443', headers: {Host: host + ':443'}});
req.setTimeout(15000, () => { console.log(JSON.stringify({error: 'timeout'})); process.exit(3); });
req.on('connect', (res, socket) => {
  if (res.statusCode !== 200) {
    console.log(JSON.stringify({connect: res.statusCode})); process.exit(2);
  }
  // No agent: with createConnection Node uses our TLS socket on the tunnel.
  const r = https.request({host, port: 443, defaultPort: 443, path, method: 'GET',
      createConnection: () => tls.connect({socket, servername: host, ALPNProtocols: ['http/1.1']})},
    (resp) => {
      let body = '';
      resp.on('data', (d) => { body += d; });
      resp.on('end', () => { console.log(JSON.stringify({status: resp.statusCode, body})); process.exit(0); });
    });
  r.on('error', (e) => { console.log(JSON.stringify({error: e.code || e.message})); process.exit(1); });
  r.end();
});
req.on('error', (e) => { console.log(JSON.stringify({error: 'proxy: ' + e.message})); process.exit(1); });
req.end();
"""


@h.test
def node_connect_by_hand(env):
    if not subprocess.run(["which", "node"], capture_output=True).returncode == 0:
        raise h.Skip("node is not installed")
    setup(env)
    ej = env_json(env)
    script = os.path.join(env.dir, "client.js")
    with open(script, "w") as f:
        f.write(NODE_SCRIPT)

    def run(extra_env):
        p = subprocess.run(["node", script, str(env.port), "acme.atlassian.net",
                            "/rest/api/3/myself"], env=h.clean_env(extra_env),
                           capture_output=True, timeout=30)
        env.extra_texts.append(p.stdout.decode() + p.stderr.decode())
        try:
            return json.loads(p.stdout.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            return {"raw": p.stdout.decode() + p.stderr.decode()}
    out = run({"NODE_EXTRA_CA_CERTS": ej["env"]["NODE_EXTRA_CA_CERTS"]})
    h.check(out.get("status") == 200, "Node https through a CONNECT tunnel, trusting "
            "NODE_EXTRA_CA_CERTS from `credproxy env`", out)
    h.check("displayName" in out.get("body", ""), "Node got the account", out)
    out = run({})
    h.check(out.get("error") in ("UNABLE_TO_VERIFY_LEAF_SIGNATURE",
                                 "UNABLE_TO_GET_ISSUER_CERT_LOCALLY", "SELF_SIGNED_CERT_IN_CHAIN"),
            "without the local CA Node refuses the leaf", out)
    recs = myself_records(env)
    h.check(len(recs) == 1 and recs[0]["authorization"] == h.BASIC,
            "one authorized request reached the fake", len(recs))


@h.test
def exec_curl_no_flags(env):
    setup(env)
    p = subprocess.run([h.BIN, "exec", "-c", env.config_path, "--", "curl", "-sS", "--max-time",
                        "20", "https://acme.atlassian.net/rest/api/3/myself"],
                       env=h.clean_env(), capture_output=True, timeout=40)
    env.extra_texts.append(p.stdout.decode() + p.stderr.decode())
    h.check(p.returncode == 0, "`credproxy exec -- curl https://…` exits 0", p.stderr)
    try:
        body = json.loads(p.stdout)
    except ValueError:
        body = {}
    h.check(body.get("accountId"), "curl got the account through the proxy", p.stdout[:400])
    h.check(len(myself_records(env)) == 1, "one request reached the fake")
    # The exit status is the command's.
    p = subprocess.run([h.BIN, "exec", "-c", env.config_path, "--", "sh", "-c", "exit 5"],
                       env=h.clean_env(), capture_output=True, timeout=20)
    h.check(p.returncode == 5, "exec passes the command's status through", p.returncode)
    p = subprocess.run([h.BIN, "exec", "-c", env.config_path, "--", "/no/such/cmd"],
                       env=h.clean_env(), capture_output=True, timeout=20)
    h.check(p.returncode == 127 and b"/no/such/cmd" in p.stderr, "missing command: 127", p)


@h.test
def env_formats(env):
    certs = setup(env)
    ej = env_json(env)
    e = ej["env"]
    url = "http://127.0.0.1:%d" % env.port
    for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        h.check(e.get(k) == url, "%s=%s" % (k, url), e)
    h.check(e.get("NO_PROXY") == "localhost,127.0.0.1,::1", "NO_PROXY", e)
    bundle = os.path.realpath(os.path.join(certs, "ca-bundle.pem"))
    for k in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO"):
        h.check(e.get(k) == bundle, "%s is the bundle" % k, e)
    h.check(e.get("NODE_EXTRA_CA_CERTS") == os.path.realpath(os.path.join(certs, "ca.pem")),
            "NODE_EXTRA_CA_CERTS is ca.pem", e)
    h.check(oct(os.stat(bundle).st_mode & 0o777) == "0o644", "bundle is 0644")
    p = subprocess.run(["sh", "-c", 'eval "$(%s env -c %s)" && echo "$https_proxy"'
                        % (h.BIN, env.config_path)], env=h.clean_env(), capture_output=True,
                       timeout=20)
    h.check(p.stdout.decode().strip() == url, "eval \"$(credproxy env)\" works in sh", p)
    p = subprocess.run([h.BIN, "env", "-c", env.config_path, "--format", "yaml"],
                       env=h.clean_env(), capture_output=True, timeout=20)
    h.check(p.returncode == 2, "unknown format: exit 2", p)


if __name__ == "__main__":
    h.main()

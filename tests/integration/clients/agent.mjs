// A Node 20 client with no npm packages, in the ways that really work with
// credproxy. Usage: node agent.mjs MODE URL  -> prints one JSON line
//   {"status": N, "body": "..."} or {"error": "..."}
//
//   gateway URL   fetch(URL) against a gateway address (mode 3), e.g.
//                 http://127.0.0.1:8082/rest/api/3/myself
//   forward URL   mode 1: http.request to the proxy in $HTTP_PROXY with the
//                 absolute URL as the path (http://acme.atlassian.net/...)
//   connect URL   mode 2: CONNECT through $HTTPS_PROXY by hand, then TLS over
//                 the tunnel; the local CA comes from NODE_EXTRA_CA_CERTS
//                 (set by `credproxy exec`), which Node reads at start-up
//   fetch URL     plain fetch(URL); Node 20's fetch ignores HTTPS_PROXY, so
//                 for an https URL this does NOT go through credproxy
//
// AGENT_AUTH=user:token adds a (dummy) Basic Authorization header.
import http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';

const [mode, url] = process.argv.slice(2);
const auth = process.env.AGENT_AUTH
  ? {Authorization: 'Basic ' + Buffer.from(process.env.AGENT_AUTH).toString('base64')} : {};
const done = (o) => { console.log(JSON.stringify(o)); process.exit(o.status ? 0 : 1); };
const fail = (e) => done({error: String(e && (e.cause?.code || e.code || e.message) || e)});
setTimeout(() => done({error: 'timeout'}), 20000).unref();

function collect(res) {
  let body = '';
  res.setEncoding('utf8');
  res.on('data', (d) => { body += d; });
  res.on('end', () => done({status: res.statusCode, location: res.headers.location, body}));
}

if (mode === 'gateway' || mode === 'fetch') {
  try {
    const r = await fetch(url, {headers: auth, redirect: 'manual'});
    done({status: r.status, location: r.headers.get('location'), body: await r.text()});
  } catch (e) { fail(e); }
} else if (mode === 'forward') {
  if (!process.env.HTTP_PROXY && !process.env.http_proxy) done({error: 'HTTP_PROXY is not set'});
  const proxy = new URL(process.env.HTTP_PROXY || process.env.http_proxy);
  const u = new URL(url);
  http.request({host: proxy.hostname, port: proxy.port, path: u.href,
                headers: {Host: u.host, ...auth}}, collect).on('error', fail).end();
} else if (mode === 'connect') {
  if (!process.env.HTTPS_PROXY && !process.env.https_proxy) done({error: 'HTTPS_PROXY is not set'});
  const proxy = new URL(process.env.HTTPS_PROXY || process.env.https_proxy);
  const u = new URL(url);
  const target = `${u.hostname}:${u.port || 443}`;
  http.request({host: proxy.hostname, port: proxy.port, method: 'CONNECT', path: target,
                headers: {Host: target}})
    .on('connect', (res, socket) => {
      if (res.statusCode !== 200) return done({error: `CONNECT ${res.statusCode}`});
      // port and defaultPort 443 keep the inner Host header "HOST" (not "HOST:80").
      https.request({host: u.hostname, port: 443, defaultPort: 443, path: u.pathname + u.search,
                     headers: auth,
                     createConnection: () => tls.connect({socket, servername: u.hostname})},
                    collect).on('error', fail).end();
    })
    .on('error', fail).end();
} else {
  done({error: `unknown mode ${mode}`});
}

#!/usr/bin/python3
"""What a scoped policy costs per request: upstream id lookups (cold and warm
per-worker cache) and held request-body bytes. Counts, not timings: it runs
the real binary (one worker, so one cache) against the fake Atlassian's
policy world and reads the fake's request records. Prints a Markdown table.

Run: CREDPROXY_BIN=build/credproxy tests/isolated.sh /usr/bin/python3 tests/bench/policy_cost.py
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
import harness as h  # noqa: E402
import test_policy as tp  # noqa: E402


def main():
    env = h.Env("policy-cost")
    try:
        h_env = env
        w = tp.World(h_env, "forward", more={"workers": 1})
        fake = env.fake
        rows = []

        def run(what, client, method, path, body=None):
            seq = fake.last_seq()
            log_before = len(env.proxy.stderr())
            raw = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
            r = w.req(client, method, path, raw)
            recs = fake.records(since=seq)
            lookups = [x for x in recs if tp.is_lookup(x)]
            fwd = [x for x in recs if not tp.is_lookup(x)]
            new_log = env.proxy.stderr()[log_before:]
            held = sum(int(line.split("policy: held ")[1].split()[0])
                       for line in new_log.splitlines() if "policy: held " in line)
            rows.append((what, r.status, len(lookups), len(fwd), held,
                         fwd[0]["body_len"] if fwd else 0))

        run("GET issue by key (OPS-1)", "triage-bot", "GET", "/rest/api/3/issue/OPS-1")
        run("GET issue by id 10010, cold cache", "triage-bot", "GET", "/rest/api/3/issue/10010")
        run("GET issue by id 10010, warm cache", "triage-bot", "GET", "/rest/api/3/issue/10010")
        run("GET issue by id 10099 (SEC), cold", "triage-bot", "GET", "/rest/api/3/issue/10099")
        run("GET issue by id 10099 (SEC), warm", "triage-bot", "GET", "/rest/api/3/issue/10099")
        run("PUT page 65601 (DOCS), cold", "docs-bot", "PUT", "/wiki/rest/api/content/65601",
            {"type": "page", "title": "t", "version": {"number": 2}})
        run("PUT page 65601 (DOCS), warm", "docs-bot", "PUT", "/wiki/rest/api/content/65601",
            {"type": "page", "title": "t", "version": {"number": 3}})
        run("GET search (JQL in the query)", "triage-bot", "GET",
            "/rest/api/2/search?jql=status%3DOpen")
        run("POST search/jql (JQL in the body)", "triage-bot", "POST", "/rest/api/3/search/jql",
            {"jql": "status = Open ORDER BY key", "maxResults": 50})
        run("POST create issue, project key", "reporter-bot", "POST", "/rest/api/3/issue",
            {"fields": {"project": {"key": "OPS"}, "summary": "s"}})
        run("POST create issue, project id, cold", "reporter-bot", "POST", "/rest/api/3/issue",
            {"fields": {"project": {"id": "10000"}, "summary": "s"}})
        run("POST create issue, project id, warm", "reporter-bot", "POST", "/rest/api/3/issue",
            {"fields": {"project": {"id": "10000"}, "summary": "s"}})
        for size in (1024, 64 * 1024, 1024 * 1024 - 64):
            pad = "x" * (size - 48)
            run("POST create page, %d B body" % size, "docs-bot", "POST", "/wiki/rest/api/content",
                {"type": "page", "space": {"key": "DOCS"}, "title": pad})
        run("POST create page, 1 MiB + 1 B body", "docs-bot", "POST", "/wiki/rest/api/content",
            b'{"type":"page","space":{"key":"DOCS"},"title":"' + b"x" * (1024 * 1024 - 40) + b'"}')
        run("DELETE issue OPS-1 (refused)", "triage-bot", "DELETE", "/rest/api/3/issue/OPS-1")
        run("anonymous GET issue (read-only, no scope)", None, "GET", "/rest/api/3/issue/SEC-1")

        print("| request | status | id lookups upstream | requests forwarded | body bytes held | "
              "body bytes forwarded |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            print("| %s | %s | %d | %d | %d | %d |" % r)
    finally:
        env.close()


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""A stand-in for an agent (or an MCP server) that talks to Jira with plain
python3-requests and no proxy code of its own.

It reads what such tools read from their environment:
  JIRA_URL        base URL (default https://acme.atlassian.net)
  JIRA_USERNAME   \ optional; sent as Basic auth. Under credproxy these are
  JIRA_API_TOKEN  / dummies: the proxy replaces the Authorization header.
and relies on the environment `credproxy exec` sets (HTTPS_PROXY, NO_PROXY,
REQUESTS_CA_BUNDLE) for everything else.

It GETs JIRA_URL/rest/api/3/myself and JIRA_URL/rest/api/3/issue/ACME-1,
then follows the issue's `self` link as the answer gave it, and prints one
JSON line: {"status", "account", "issue_status", "self", "self_status"} or
{"error": ...}; exit status 0 only when every step answered 200.
"""
import json
import os
import sys

import requests


def main():
    base = os.environ.get("JIRA_URL", "https://acme.atlassian.net").rstrip("/")
    user, token = os.environ.get("JIRA_USERNAME"), os.environ.get("JIRA_API_TOKEN")
    auth = (user, token) if user and token else None
    out = {}
    try:
        r = requests.get(base + "/rest/api/3/myself", auth=auth, timeout=15)
        out["status"] = r.status_code
        body = r.json() if r.status_code == 200 else {}
        out["account"] = body.get("accountId")
        r = requests.get(base + "/rest/api/3/issue/ACME-1", auth=auth, timeout=15)
        out["issue_status"] = r.status_code
        out["self"] = (r.json() if r.status_code == 200 else {}).get("self")
        if out["self"]:
            # The link as the answer gave it (https://SITE in mode 2, the gateway in mode 3).
            out["self_status"] = requests.get(out["self"], auth=auth, timeout=15).status_code
    except (requests.RequestException, ValueError) as e:
        out["error"] = "%s: %s" % (type(e).__name__, e)
    print(json.dumps(out))
    ok = out.get("status") == out.get("issue_status") == out.get("self_status") == 200
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""scripts/run.sh installs only what building and running needs and builds only the binary;
scripts/setup.sh keeps the full set for scripts/test.sh (issue 11, item 7)."""
import os
import subprocess

import harness as h
from harness import check

SCRIPTS = os.path.join(h.SOURCE_DIR, "scripts")
NOT_FOR_RUN = ["podman", "debootstrap", "redis-server", "nodejs", "python3-jira", "runc",
               "python3-requests", "wrk"]


def pkgs(*args):
    p = subprocess.run([os.path.join(SCRIPTS, "setup.sh")] + list(args) + ["--print"],
                       capture_output=True, timeout=20)
    check(p.returncode == 0, "setup.sh %s --print exits 0" % " ".join(args), p.stderr)
    return p.stdout.decode().split()


@h.test
def run_installs_runtime_only(env):
    runtime, full, bench = pkgs("--runtime"), pkgs(), pkgs("--bench")
    for p in ("cmake", "libevent-dev", "libcurl4-openssl-dev", "libyaml-dev", "node-llhttp"):
        check(p in runtime, "the runtime set has %s" % p, runtime)
    for p in NOT_FOR_RUN:
        check(p not in runtime, "the runtime set leaves out %s" % p, runtime)
    check(set(runtime) < set(full) < set(bench), "runtime < full < bench", (runtime, full))
    for p in ("podman", "python3-jira", "redis-server", "nodejs"):
        check(p in full, "the full set (scripts/test.sh) still has %s" % p)
    with open(os.path.join(SCRIPTS, "run.sh")) as f:
        run = f.read()
    check("scripts/setup.sh --runtime" in run, "run.sh asks setup.sh for --runtime")
    check("--target credproxy" in run, "run.sh builds only the binary")
    with open(os.path.join(SCRIPTS, "test.sh")) as f:
        test = f.read()
    check("scripts/setup.sh\n" in test, "test.sh installs the full set")


if __name__ == "__main__":
    h.main()

#!/usr/bin/python3
"""`cmake --install` and the systemd unit (issue 11, item 6).

- cmake --install into a temporary prefix puts the binary, the manual page, the
  example configurations, README, LICENSE and the unit where they belong; the
  installed binary runs; every installed example lints (--no-secrets).
- dist/credproxy.service passes `systemd-analyze verify` without a single
  complaint (verify exits 0 even on unknown keys, so stderr must be empty), and
  carries the hardening and credential handling the README promises.

Run: CREDPROXY_BIN=build/credproxy /usr/bin/python3 tests/integration/test_install.py
"""
import os
import shutil
import subprocess

import harness as h
from harness import check

BUILD_DIR = os.path.dirname(os.path.abspath(h.BIN))


def install(env):
    prefix = os.path.join(env.dir, "prefix")
    p = subprocess.run(["cmake", "--install", BUILD_DIR, "--prefix", prefix],
                       capture_output=True, timeout=120)
    check(p.returncode == 0, "cmake --install exits 0", p.stderr.decode()[-1000:])
    return prefix


@h.test(timeout=180)
def cmake_install_layout(env):
    prefix = install(env)
    want = ["bin/credproxy", "share/man/man1/credproxy.1",
            "share/doc/credproxy/examples/credproxy.example.yaml",
            "share/doc/credproxy/examples/minimal.yaml",
            "share/doc/credproxy/examples/systemd.yaml",
            "share/doc/credproxy/README.md", "share/doc/credproxy/LICENSE",
            "lib/systemd/system/credproxy.service"]
    for rel in want:
        check(os.path.isfile(os.path.join(prefix, rel)), "installed %s" % rel)
    binary = os.path.join(prefix, "bin", "credproxy")
    p = subprocess.run([binary, "--version"], capture_output=True, timeout=20)
    check(p.returncode == 0 and p.stdout.startswith(b"credproxy "), "the installed binary runs", p)
    with open(os.path.join(prefix, "share/doc/credproxy/LICENSE")) as f:
        text = f.read()
    check("MIT License" in text and "credproxy authors" in text, "LICENSE: MIT, credproxy authors")
    exdir = os.path.join(prefix, "share/doc/credproxy/examples")
    for name in sorted(os.listdir(exdir)):
        p = subprocess.run([binary, "lint", "--no-secrets", "-c", os.path.join(exdir, name)],
                           env=h.clean_env(), capture_output=True, timeout=20)
        check(p.returncode == 0, "installed example %s lints (--no-secrets)" % name, p.stderr)
    if shutil.which("man"):
        p = subprocess.run(["man", "-l", os.path.join(prefix, "share/man/man1/credproxy.1")],
                           capture_output=True, timeout=30, env=dict(h.clean_env(), MANPAGER="cat",
                                                                       PAGER="cat"))
        out = p.stdout.decode("utf-8", "replace")
        check(p.returncode == 0 and "healthcheck" in out and "--no-secrets" in out.replace(
            "\u2010", "-"), "the manual page renders and lists the commands", out[:400])


@h.test(timeout=120)
def systemd_unit_verifies(env):
    prefix = install(env)
    unit = os.path.join(prefix, "lib/systemd/system/credproxy.service")
    with open(unit) as f:
        text = f.read()
    for line in ("DynamicUser=yes", "LoadCredential=atlassian-token:/etc/credproxy/atlassian-token",
                 "ProtectSystem=strict", "NoNewPrivileges=yes",
                 "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "CapabilityBoundingSet=\n",
                 "ExecReload=/bin/kill -HUP $MAINPID"):
        check(line in text, "unit has %s" % line.strip())
    check("@" not in text.replace("$MAINPID", "").split("[Unit]")[1].replace(
        "SystemCallFilter=@system-service", "").replace("~@privileged @resources", ""),
        "every @VAR@ was substituted")
    tool = shutil.which("systemd-analyze")
    if not tool:
        raise h.Skip("systemd-analyze is not installed (Debian package systemd); the unit's "
                     "text was checked, `systemd-analyze verify` was not run")
    # ExecStart= must name an executable that exists: the one just installed.
    local = os.path.join(env.dir, "credproxy.service")
    bindir = [ln for ln in text.splitlines() if ln.startswith("ExecStart=")][0].split()[0]
    bindir = os.path.dirname(bindir[len("ExecStart="):])
    with open(local, "w") as f:
        f.write(text.replace(bindir + "/credproxy", os.path.join(prefix, "bin", "credproxy")))
    p = subprocess.run([tool, "verify", "--man=no", local], capture_output=True, timeout=60)
    err = p.stderr.decode("utf-8", "replace")
    check(p.returncode == 0 and err.strip() == "",
          "systemd-analyze verify: no complaint", (p.returncode, err[-1500:]))
    # A key systemd does not know is complained about (so the check above can fail).
    with open(local, "a") as f:
        f.write("NotASystemdKey=1\n")
    p = subprocess.run([tool, "verify", "--man=no", local], capture_output=True, timeout=60)
    check("NotASystemdKey" in p.stderr.decode("utf-8", "replace"),
          "verify does report an unknown key (the check is live)")
    p = subprocess.run([os.path.join(prefix, "bin", "credproxy"), "lint", "--no-secrets", "-c",
                        os.path.join(h.SOURCE_DIR, "dist", "systemd.yaml")], env=h.clean_env(),
                       capture_output=True, timeout=20)
    check(p.returncode == 0 and p.stdout == b"", "dist/systemd.yaml lints clean", p)


if __name__ == "__main__":
    h.main()

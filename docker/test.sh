#!/usr/bin/env bash
# docker/test.sh — build the credproxy image with podman and prove it runs,
# on a machine where no image registry is reachable (only the Debian mirror).
#
#  1. base image localhost/credproxy-base:bookworm, made once and cached:
#     debootstrap --variant=minbase bookworm (or a copy of CREDPROXY_ROOTFS, an
#     existing debootstrapped tree), slimmed like debian:bookworm-slim (no docs,
#     man pages, locales or apt lists; dpkg excludes them from later installs),
#     then `podman import`;
#  2. podman build --isolation chroot --format docker of docker/Dockerfile with
#     BASE=that image (stage 1 compiles with -Werror and runs the unit tests);
#  3. the runtime image's size, in MiB;
#  4. the image's own checks: the shipped example config and the ATLASSIAN_*
#     variables both lint;
#  5. runs it like a hardened sidecar (--runtime runc, --read-only, --tmpfs
#     /tmp, --user 10001, no capabilities, nofile/nproc ulimits, host network
#     for loopback only) with a mounted config and the token as a mounted file,
#     against tests/fake_atlassian.py on the host (a throwaway test CA mounted
#     in, upstream.connect_to acme.atlassian.net:443 -> the fake), and checks:
#     the health check, GET /readyz -> 200, one proxied request -> 200 with
#     the fake's account, the Authorization the fake received, the uid and the
#     read-only root, a clean SIGTERM stop (exit 0), and no secret in the logs.
#
# Exit status: 0 passed; 1 failed; 77 skipped (printed "SKIP: reason") when
# this machine cannot do it at all: not root, no podman/runc/debootstrap,
# podman cannot start a container, the Debian mirror is unreachable.
# A failure of the image build or of the container's checks is 1, never 77.
#
# Environment: IMAGE (default localhost/credproxy:test), BASE_IMAGE (default
# localhost/credproxy-base:bookworm), CREDPROXY_ROOTFS (an existing
# debootstrapped bookworm tree to import instead of running debootstrap; it is
# copied, never changed), DEBIAN_MIRROR (default http://deb.debian.org/debian),
# KEEP=1 keeps the temp dir and the container for inspection.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
IMAGE=${IMAGE:-localhost/credproxy:test}
BASE_IMAGE=${BASE_IMAGE:-localhost/credproxy-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PYTHON=/usr/bin/python3
NAME="credproxy-test-$$"
EMAIL="svc-bot@example.com"
# A fresh fake token per run, so the leak check cannot pass by accident.
TOKEN="ATATT3xFfGF0-docker-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
BASIC_B64=$(printf '%s:%s' "$EMAIL" "$TOKEN" | base64 -w0)

# Time limits (seconds). A cold run is about debootstrap + build.
T_DEBOOTSTRAP=360
T_BUILD=480
T_READY=30
T_STEP=30

T0=$SECONDS
WORK=""
FAKE_PID=""
passed=0
failed=0

say() { printf 'docker/test.sh: %s\n' "$*"; }
redact() { sed -e "s|$TOKEN|<REDACTED>|g" -e "s|$BASIC_B64|<REDACTED>|g"; }
skip() {
    say "SKIP: $*"
    exit 77
}
die() {
    say "FAIL: $*"
    exit 1
}
check() { # check NAME CONDITION-RESULT(0/1) [DETAIL]
    if [ "$2" -eq 0 ]; then
        passed=$((passed + 1))
        printf 'ok   %s\n' "$1"
    else
        failed=$((failed + 1))
        printf 'FAIL %s%s\n' "$1" "${3:+: $3}" | redact
    fi
}
phase() { say "[$((SECONDS - T0))s] $*"; }

cleanup() {
    local rc=$?
    set +e
    if [ -n "${KEEP:-}" ]; then
        say "KEEP=1: container $NAME and $WORK are left in place"
    else
        podman rm -f -t 5 --ignore "$NAME" >/dev/null 2>&1
        podman rm -f -t 5 --ignore "$NAME-env" >/dev/null 2>&1
    fi
    if [ -n "$FAKE_PID" ]; then
        kill "$FAKE_PID" 2>/dev/null
        wait "$FAKE_PID" 2>/dev/null
    fi
    if [ -n "$WORK" ] && [ -z "${KEEP:-}" ]; then
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# ---------------------------------------------------------------------------
# 0. can this machine do it at all?
[ "$(id -u)" -eq 0 ] || skip "needs root (podman --isolation chroot, debootstrap, runc)"
for c in podman runc curl openssl timeout base64 tar; do
    command -v "$c" >/dev/null 2>&1 || skip "$c is not installed (apt-get install podman runc)"
done
[ -x "$PYTHON" ] || skip "$PYTHON is missing (runs the fake Atlassian)"
if ! out=$(timeout 60 podman info --format '{{.Host.CgroupsVersion}} {{.Store.GraphDriverName}}' 2>&1); then
    skip "podman info fails: $(printf '%s' "$out" | tail -n 3 | tr '\n' ' ')"
fi
say "podman $(podman --version | awk '{print $3}'), cgroups $out, runc $(runc --version | awk 'NR==1{print $3}')"
# The Dockerfile installs its packages from the Debian mirror.
if ! timeout 20 curl -fsS -o /dev/null --max-time 15 "$MIRROR/dists/bookworm/InRelease"; then
    skip "the Debian mirror $MIRROR is unreachable (the image installs its packages from it)"
fi

# Containers left by an earlier run that was killed (SIGKILL skips the trap).
for c in $(podman ps -a --format '{{.Names}}' 2>/dev/null | grep -E '^credproxy-test-[0-9]+(-env)?$'); do
    pid=${c#credproxy-test-}
    kill -0 "${pid%-env}" 2>/dev/null && continue
    say "removing $c, left by an earlier run"
    podman rm -f -t 2 "$c" >/dev/null 2>&1 || true
done

WORK=$(mktemp -d /tmp/credproxy-docker-test.XXXXXX)
chmod 0700 "$WORK"

# ---------------------------------------------------------------------------
# 1. the base image (cached between runs)
make_base() {
    local root="$WORK/rootfs"
    if [ -n "${CREDPROXY_ROOTFS:-}" ] && [ -f "$CREDPROXY_ROOTFS/etc/debian_version" ] &&
        [ ! -e "$CREDPROXY_ROOTFS/debootstrap" ]; then
        phase "base: copying the debootstrapped tree $CREDPROXY_ROOTFS"
        cp -a "$CREDPROXY_ROOTFS" "$root"
    else
        command -v debootstrap >/dev/null 2>&1 || skip "debootstrap is not installed (apt-get install debootstrap)"
        phase "base: debootstrap --variant=minbase bookworm from $MIRROR (takes minutes)"
        if ! timeout "$T_DEBOOTSTRAP" debootstrap --variant=minbase bookworm "$root" "$MIRROR" \
            >"$WORK/debootstrap.log" 2>&1; then
            tail -n 15 "$WORK/debootstrap.log"
            skip "debootstrap failed or took over ${T_DEBOOTSTRAP}s (log above)"
        fi
    fi
    # Slim it like debian:bookworm-slim: drop documentation, manuals, locales
    # and package lists now, and keep dpkg from installing them later.
    find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
    find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* \
        "$root"/usr/share/lintian/* "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* \
        "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/etc/apt/sources.list
    mkdir -p "$root/etc/dpkg/dpkg.cfg.d" "$root/etc/apt/apt.conf.d" "$root/etc/apt/sources.list.d"
    cat >"$root/etc/dpkg/dpkg.cfg.d/credproxy-slim" <<'EOF'
# container image: no documentation, manuals or translations (copyright files stay)
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
    cat >"$root/etc/apt/apt.conf.d/credproxy-slim" <<'EOF'
// container image: no recommends, no package cache kept, no translations
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb || true"; };
EOF
    local m=${MIRROR%/debian}
    cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $m/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    : >"$root/etc/resolv.conf"
    phase "base: podman import -> $BASE_IMAGE"
    tar --numeric-owner -C "$root" -c . |
        timeout 300 podman import --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >"$WORK/import.log" 2>&1 ||
        die "podman import of the base image failed: $(tail -n 3 "$WORK/import.log")"
    rm -rf "$root"
}
if podman image exists "$BASE_IMAGE"; then
    phase "base: $BASE_IMAGE is cached"
else
    make_base
fi

# Can podman start a container here at all (namespaces, cgroups, runc)?
# (Explicit ulimits: podman's default nofile can exceed what this host lets a
# container set, and runc then fails with "error setting rlimits".)
ULIMITS=(--ulimit nofile=4096:4096 --ulimit nproc=256:256)
if ! out=$(timeout 60 podman run --rm --runtime runc --network host "${ULIMITS[@]}" \
    --health-interval disable --entrypoint /bin/true "$BASE_IMAGE" 2>&1); then
    skip "podman cannot start a container here: $(printf '%s' "$out" | tail -n 3 | tr '\n' ' ')"
fi

# ---------------------------------------------------------------------------
# 2. build
phase "build: podman build --isolation chroot -f docker/Dockerfile -> $IMAGE"
tb=$SECONDS
if ! timeout "$T_BUILD" podman build --isolation chroot --format docker --layers --jobs 2 \
    --build-arg BASE="$BASE_IMAGE" --ignorefile "$SRC/docker/Dockerfile.dockerignore" \
    -f "$SRC/docker/Dockerfile" -t "$IMAGE" "$SRC" >"$WORK/build.log" 2>&1; then
    tail -n 60 "$WORK/build.log"
    die "podman build failed or took over ${T_BUILD}s (last lines above)"
fi
phase "build: done in $((SECONDS - tb))s"
grep -E '^runtime-deps: ' "$WORK/build.log" || true
grep -E 'tests passed|tests failed' "$WORK/build.log" | tail -n 1 || true

# ---------------------------------------------------------------------------
# From here on every step is a check that records its result and goes on.
set +e

# 3. size
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
base_size=$(podman image inspect --format '{{.Size}}' "$BASE_IMAGE")
say "runtime image $IMAGE: $(awk -v s="$size" 'BEGIN{printf "%.1f", s/1048576}') MiB" \
    "(base $(awk -v s="$base_size" 'BEGIN{printf "%.1f", s/1048576}') MiB +" \
    "$(awk -v s="$size" -v b="$base_size" 'BEGIN{printf "%.1f", (s-b)/1048576}') MiB)"
hc=$(podman image inspect --format '{{json .HealthCheck}}' "$IMAGE" 2>/dev/null || echo null)
case "$hc" in
*healthcheck*) check "image carries HEALTHCHECK credproxy healthcheck" 0 ;;
*) check "image carries HEALTHCHECK credproxy healthcheck" 1 "$hc" ;;
esac
user=$(podman image inspect --format '{{.Config.User}}' "$IMAGE")
[ "$user" = "10001:10001" ]
check "image runs as 10001:10001 by default" $? "$user"

# ---------------------------------------------------------------------------
# 4. test material: TLS for the fake, token, config
phase "setup: test CA, the fake Atlassian, config"
tls() { openssl "$@" >/dev/null 2>>"$WORK/openssl.log"; }
(
    set -e
    cd "$WORK"
    tls req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
        -days 2 -subj "/CN=credproxy docker test CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
    tls req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout srv.key -out srv.csr \
        -subj "/CN=acme.atlassian.net"
    printf 'subjectAltName=DNS:acme.atlassian.net,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >ext.cnf
    tls x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 \
        -extfile ext.cnf
    chmod 0644 ca.pem
) || die "openssl could not make the test certificates: $(tail -n 3 "$WORK/openssl.log")"

# The token: a file owned by the container's uid, mode 0400, in a 0700 temp
# dir. That is readable inside and raises no "readable by group or others" warning.
printf '%s\n' "$TOKEN" >"$WORK/token"
chown 10001:10001 "$WORK/token"
chmod 0400 "$WORK/token"

ACCOUNT_ID="5b10ac8d82e05b22cc7d4e0d"
"$PYTHON" - "$WORK/sites.json" "$EMAIL" "$ACCOUNT_ID" <<EOF
import json, sys
path, email, acct = sys.argv[1:4]
token = open("$WORK/token").read().strip()
json.dump({"acme.atlassian.net": {"credentials": [[email, token]],
           "account": {"accountId": acct, "displayName": "Service Bot", "email": email}}},
          open(path, "w"))
EOF
mkdir -p "$WORK/fake"
"$PYTHON" "$SRC/tests/fake_atlassian.py" --port 0 --control-port 0 --cert "$WORK/srv.pem" \
    --key "$WORK/srv.key" --state-dir "$WORK/fake" --sites "$WORK/sites.json" \
    >"$WORK/fake.out" 2>"$WORK/fake.err" </dev/null &
FAKE_PID=$!
for _ in $(seq 1 150); do
    [ -s "$WORK/fake.out" ] && break
    kill -0 "$FAKE_PID" 2>/dev/null || break
    sleep 0.1
done
FAKE_PORT=$("$PYTHON" -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["port"])' \
    "$WORK/fake.out" 2>/dev/null) || { redact <"$WORK/fake.err" | tail -n 20; die "the fake Atlassian did not start"; }
CONTROL_PORT=$("$PYTHON" -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["control_port"])' "$WORK/fake.out")

free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
APORT=$(free_port)
while [ "$APORT" = "$PORT" ]; do APORT=$(free_port); done

cat >"$WORK/credproxy.yaml" <<EOF
# docker/test.sh: the sidecar configuration, pointed at the fake Atlassian
listen: 127.0.0.1:$PORT
admin: 127.0.0.1:$APORT
workers: 1
credentials:
  svc:
    email: $EMAIL
    token_file: /run/secrets/atlassian-token
    rate_limit: 100/min
sites:
  - domain: acme
    credential: svc
upstream:
  ca_file: /etc/credproxy/test-ca.pem
  connect_to:
    - acme.atlassian.net:443:127.0.0.1:$FAKE_PORT
log:
  format: json
  level: debug
  audit: true
shutdown_timeout: 5s
EOF
chmod 0644 "$WORK/credproxy.yaml"

# ---------------------------------------------------------------------------
# 5. the image's own configuration checks (no network)
out=$(timeout "$T_STEP" podman run --rm --runtime runc --network none --read-only --user 10001 "${ULIMITS[@]}" \
    --health-interval disable \
    -v "$WORK/token:/run/secrets/atlassian-token:ro" "$IMAGE" \
    lint -c /etc/credproxy/credproxy.example.yaml 2>&1)
check "the shipped example config (docker/credproxy.yaml) lints" $? "$out"
# (-e NAME without a value: the token comes from this environment, not argv.)
out=$(ATLASSIAN_API_TOKEN="$TOKEN" timeout "$T_STEP" podman run --rm --runtime runc --network none \
    --read-only --user 10001 "${ULIMITS[@]}" --health-interval disable \
    -e ATLASSIAN_SITE=acme -e ATLASSIAN_EMAIL="$EMAIL" -e ATLASSIAN_API_TOKEN "$IMAGE" lint 2>&1)
check "the ATLASSIAN_* variable configuration lints" $? "$out"

# ---------------------------------------------------------------------------
# 6. run it
phase "run: podman run --runtime runc --read-only --user 10001 (proxy 127.0.0.1:$PORT, admin :$APORT, fake :$FAKE_PORT)"
if ! out=$(timeout 60 podman run -d --name "$NAME" --runtime runc --network host \
    --read-only --tmpfs /tmp:rw,size=16m,mode=1777 --user 10001 \
    --cap-drop all --security-opt no-new-privileges \
    "${ULIMITS[@]}" --health-interval disable \
    -v "$WORK/credproxy.yaml:/etc/credproxy/credproxy.yaml:ro" \
    -v "$WORK/token:/run/secrets/atlassian-token:ro" \
    -v "$WORK/ca.pem:/etc/credproxy/test-ca.pem:ro" \
    -e CREDPROXY_CONFIG=/etc/credproxy/credproxy.yaml \
    "$IMAGE" 2>&1); then
    die "podman run failed: $out"
fi

ready=1
deadline=$((SECONDS + T_READY))
while [ $SECONDS -lt $deadline ]; do
    if [ "$(podman inspect --format '{{.State.Running}}' "$NAME" 2>/dev/null)" != true ]; then
        break
    fi
    code=$(curl -s --noproxy '*' -o /dev/null -w '%{http_code}' --max-time 2 \
        "http://127.0.0.1:$APORT/readyz" || true)
    if [ "$code" = 200 ]; then
        ready=0
        break
    fi
    sleep 0.2
done
if [ $ready -ne 0 ]; then
    say "container state: $(podman inspect --format '{{.State.Status}} exit={{.State.ExitCode}}' "$NAME" 2>&1)"
    say "container log (last 30 lines):"
    podman logs "$NAME" 2>&1 | tail -n 30 | redact
fi
check "container ready: GET /readyz -> 200 within ${T_READY}s" $ready

if [ $ready -eq 0 ]; then
    out=$(timeout "$T_STEP" podman healthcheck run "$NAME" 2>&1)
    check "podman healthcheck run (the image's HEALTHCHECK) -> healthy" $? "$out"
    out=$(timeout "$T_STEP" podman exec "$NAME" /usr/local/bin/credproxy healthcheck 2>&1)
    rc=$?
    check "podman exec credproxy healthcheck -> exit 0 ($out)" $rc "$out"

    body=$(curl -sS --noproxy '*' --max-time 10 -w '\n%{http_code}' "http://127.0.0.1:$APORT/readyz" 2>&1)
    [ "${body##*$'\n'}" = 200 ]
    check "GET /readyz -> 200 (${body%%$'\n'*})" $?

    resp=$(curl -sS --max-time 30 -x "http://127.0.0.1:$PORT" -w '\n%{http_code}' \
        http://acme.atlassian.net/rest/api/3/myself 2>&1)
    code=${resp##*$'\n'}
    [ "$code" = 200 ] && case "$resp" in *"\"$ACCOUNT_ID\""*"Service Bot"* | *"Service Bot"*"\"$ACCOUNT_ID\""*) true ;; *) false ;; esac
    check "proxied GET http://acme.atlassian.net/rest/api/3/myself -> 200 as the fake's account" $? "$resp"

    recs=$(curl -sS --noproxy '*' --max-time 10 "http://127.0.0.1:$CONTROL_PORT/__records" 2>&1)
    verdict=$(printf '%s' "$recs" | "$PYTHON" -c '
import json, sys
want = "Basic " + sys.argv[1]
try:
    recs = [r for r in json.load(sys.stdin) if r.get("path") == "/rest/api/3/myself"]
except ValueError:
    print("records unreadable"); sys.exit(1)
if len(recs) != 1:
    print("%d requests reached the fake" % len(recs)); sys.exit(1)
r = recs[0]
if r.get("authorization") != want:
    print("the Authorization it received is not Basic base64(email:token)"); sys.exit(1)
if not r.get("tls") or r.get("sni") != "acme.atlassian.net":
    print("not over TLS with SNI acme.atlassian.net (tls=%r sni=%r)" % (r.get("tls"), r.get("sni"))); sys.exit(1)
print("one request, over TLS, SNI acme.atlassian.net, the right Authorization")
' "$BASIC_B64" 2>&1)
    check "the fake received $verdict" $? "$verdict"

    # The compose/k8s topology: an agent container in the proxy's network
    # namespace reaches it on 127.0.0.1 (bash's /dev/tcp: the base has no curl).
    resp=$(timeout "$T_STEP" podman run --rm --runtime runc --network "container:$NAME" \
        "${ULIMITS[@]}" --user 65534:65534 "$BASE_IMAGE" bash -c '
            exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
            printf "GET http://acme.atlassian.net/rest/api/3/myself HTTP/1.1\r\nHost: acme.atlassian.net\r\nConnection: close\r\n\r\n" >&3
            timeout 20 cat <&3' agent "$PORT" 2>&1)
    case "$resp" in "HTTP/1.1 200"*"\"$ACCOUNT_ID\""*) true ;; *) false ;; esac
    check "an agent container sharing the proxy's network namespace gets 200 via 127.0.0.1:$PORT" $? "$resp"

    idout=$(timeout "$T_STEP" podman exec "$NAME" id 2>&1)
    case "$idout" in "uid=10001(credproxy) gid=10001(credproxy)"*) true ;; *) false ;; esac
    check "the proxy runs as $idout" $? "$idout"
    out=$(timeout "$T_STEP" podman exec "$NAME" sh -c 'touch /usr/local/bin/x 2>&1; echo rc=$?' 2>&1)
    case "$out" in *"Read-only file system"*) true ;; *) false ;; esac
    check "the root filesystem is read-only" $? "$out"
    lim=$(timeout "$T_STEP" podman exec "$NAME" sh -c 'grep -E "^Max (open files|processes)" /proc/1/limits' 2>&1)
    printf '%s' "$lim" | grep -Eq '^Max open files +4096 +4096' &&
        printf '%s' "$lim" | grep -Eq '^Max processes +256 +256'
    check "ulimits nofile=4096 nproc=256 apply to the proxy" $? "$lim"
fi

# The ATLASSIAN_* mode (no config file, no admin listener): the HEALTHCHECK
# still answers. A private loopback-only namespace (--network none) keeps its
# fixed 127.0.0.1:8080 away from the host's.
ENVNAME="$NAME-env"
if out=$(ATLASSIAN_API_TOKEN="$TOKEN" timeout 60 podman run -d --name "$ENVNAME" --runtime runc \
    --network none --read-only --user 10001 "${ULIMITS[@]}" --health-interval disable \
    -e ATLASSIAN_SITE=acme -e ATLASSIAN_EMAIL="$EMAIL" -e ATLASSIAN_API_TOKEN "$IMAGE" 2>&1); then
    healthy=1
    deadline=$((SECONDS + T_READY))
    while [ $SECONDS -lt $deadline ]; do
        out=$(timeout "$T_STEP" podman healthcheck run "$ENVNAME" 2>&1) && { healthy=0; break; }
        [ "$(podman inspect --format '{{.State.Running}}' "$ENVNAME" 2>/dev/null)" = true ] || break
        sleep 0.5
    done
    [ $healthy -eq 0 ] || out="$out; $(podman logs "$ENVNAME" 2>&1 | tail -n 10)"
    check "ATLASSIAN_* variables only: podman healthcheck run -> healthy" $healthy "$out"
    timeout 40 podman stop -t 15 "$ENVNAME" >/dev/null 2>&1
    envlogs=$(podman logs "$ENVNAME" 2>&1)
    case "$envlogs" in *"$TOKEN"* | *"$BASIC_B64"*) leak=1 ;; *) leak=0 ;; esac
    check "ATLASSIAN_* variables only: no token in podman logs" $leak
    podman rm -f -t 2 "$ENVNAME" >/dev/null 2>&1
else
    check "ATLASSIAN_* variables only: podman run" 1 "$out"
fi

# a clean stop: SIGTERM -> exit 0 within shutdown_timeout
if [ "$(podman inspect --format '{{.State.Running}}' "$NAME" 2>/dev/null)" = true ]; then
    timeout 40 podman stop -t 15 "$NAME" >/dev/null 2>&1
fi
ec=$(podman inspect --format '{{.State.ExitCode}}' "$NAME" 2>&1)
[ "$ec" = 0 ]
check "SIGTERM (podman stop) -> exit status 0" $? "exit status $ec"

logs=$(podman logs "$NAME" 2>&1)
nlines=$(printf '%s\n' "$logs" | wc -l)
leak=0
case "$logs" in *"$TOKEN"* | *"$BASIC_B64"*) leak=1 ;; esac
check "no token or Authorization value in podman logs ($nlines lines)" $leak
case "$logs" in *"readable by group or others"*) warn=1 ;; *) warn=0 ;; esac
check "no token-file permission warning (file owner 10001, mode 0400)" $warn
if [ "$failed" -ne 0 ]; then
    say "container log (last 30 lines):"
    printf '%s\n' "$logs" | tail -n 30 | redact
fi

say "$passed passed, $failed failed in $((SECONDS - T0))s"
[ "$failed" -eq 0 ]

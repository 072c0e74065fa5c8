#!/bin/sh
# runtime-deps.sh BINARY PACKAGE...
# Run in the build stage of docker/Dockerfile: every shared library BINARY
# names (ELF NEEDED) must be shipped by one of PACKAGE... or by libc6 (in
# every Debian image: the essential packages depend on it). Prints the
# library -> package map; exits 1 naming what the runtime stage would miss.
set -eu
bin=$1
shift
wanted=" $* "
missing=""
needed=$(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
[ -n "$needed" ] || { echo "runtime-deps: no NEEDED entries in $bin?" >&2; exit 1; }
for lib in $needed; do
    path=$(ldd "$bin" | awk -v l="$lib" '$1 == l && $2 == "=>" { print $3 }')
    if [ -z "$path" ] || [ "$path" = "not" ]; then
        echo "runtime-deps: $lib does not resolve in the build stage" >&2
        missing="$missing $lib"
        continue
    fi
    pkg=""
    # usrmerge: dpkg may know the file under /lib or /usr/lib, or by its real name.
    for p in "$path" "$(readlink -f "$path")" "/usr$path" "${path#/usr}"; do
        pkg=$(dpkg -S "$p" 2>/dev/null | head -n1 | cut -d: -f1) || true
        [ -n "$pkg" ] && break
    done
    if [ -z "$pkg" ]; then
        echo "runtime-deps: $lib ($path) belongs to no package" >&2
        missing="$missing $lib"
        continue
    fi
    case "$wanted" in
    *" $pkg "*) how="listed" ;;
    *)
        if [ "$pkg" = libc6 ]; then
            how="in every base image"
        else
            how="MISSING from RUNTIME_PACKAGES"
            case "$missing " in *" $pkg "*) ;; *) missing="$missing $pkg" ;; esac
        fi
        ;;
    esac
    printf 'runtime-deps: %-28s %-26s %s\n' "$lib" "$pkg" "$how"
done
if [ -n "$missing" ]; then
    echo "runtime-deps: the runtime stage would lack:$missing" >&2
    exit 1
fi

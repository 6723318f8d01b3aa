#!/usr/bin/env bash
# Install the system programs Chorus runs against, when they are missing.
#   system-deps.sh nginx [prometheus] [chromium] [wrk] [node] [npm] [libnss_wrapper] [ip]
# Uses apt-get when running as root on Debian/Ubuntu; otherwise says what is missing and
# carries on (the devstack runs without nginx; tests that need a program fail naming it).
set -euo pipefail

declare -A PACKAGE=([nginx]=nginx [prometheus]=prometheus [promtool]=prometheus [chromium]=chromium [wrk]=wrk [redis-server]=redis-server [node]=nodejs [npm]=npm [libnss_wrapper]=libnss-wrapper [ip]=iproute2)
declare -A BINARY=([nginx]=/usr/sbin/nginx [prometheus]=/usr/bin/prometheus [promtool]=/usr/bin/promtool [chromium]=/usr/bin/chromium [wrk]=/usr/bin/wrk [redis-server]=/usr/bin/redis-server [node]=/usr/bin/node [npm]=/usr/bin/npm [libnss_wrapper]=/usr/lib/x86_64-linux-gnu/libnss_wrapper.so [ip]=/usr/sbin/ip)

missing=()
for program in "$@"; do
    if ! command -v "$program" >/dev/null 2>&1 && [ ! -e "${BINARY[$program]:-/nonexistent}" ]; then
        missing+=("${PACKAGE[$program]:-$program}")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${missing[*]} with apt-get…"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # Debian's packages start their services; the devstack runs its own, on its own ports.
    for service in nginx prometheus redis-server; do
        service "$service" stop >/dev/null 2>&1 || true
    done
else
    echo "note: missing ${missing[*]} (install them, or run as root on Debian to have them installed)" >&2
fi

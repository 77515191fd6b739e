#!/usr/bin/env bash
# Installs the Debian packages the test suite drives for real (curl, iperf3,
# PostgreSQL, Chromium, iproute2/iptables for the namespace labs, a C compiler
# for the labs' link emulator) and builds that emulator (native/build/impair,
# scripts/build-impair.sh). Idempotent: installs nothing when everything is
# present. Needs root (CI is root). No ethtool: impair turns the veths'
# offloads off itself (impair --offloads-off).
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have curl || need+=(curl)
have iperf3 || need+=(iperf3)
have ip || need+=(iproute2)
have iptables || need+=(iptables)
have ping || need+=(iputils-ping)
have cc || need+=(gcc)
[ -e /usr/include/linux/if_packet.h ] && [ -e /usr/include/stdio.h ] || need+=(libc6-dev)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
# Debian's Chromium for the decoy browser test (playwright-core drives it; it downloads no browser).
[ -x /usr/bin/chromium ] || need+=(chromium)
build_impair() { bash "$(dirname "$0")/build-impair.sh"; }
if [ "${#need[@]}" -eq 0 ]; then
  echo "test deps: all present"
  build_impair
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "test deps missing (${need[*]}); run this script as root, or install them yourself" >&2
  exit 1
fi
echo "test deps: installing ${need[*]}"
# No daemon auto-start: tests start what they need themselves.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "test deps: installed"
build_impair

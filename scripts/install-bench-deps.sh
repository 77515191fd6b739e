#!/usr/bin/env bash
# Installs the peers `npm run bench -- proxy` measures polytun against:
# iperf3 (the traffic generator), shadowsocks-libev (ss-server + ss-tunnel,
# the main peer for the proxy path), its v2ray plugin (ss-v2ray-plugin, the
# wss peer of `npm run bench -- gateway`) and kcptun (kcptun-client + kcptun-server,
# the reliable-UDP peer of `npm run bench -- udp`); see
# /work/shared/design/PEER-BENCH.md.
# Idempotent: does nothing when everything is present. Needs root.
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have iperf3 || need+=(iperf3)
{ have ss-server && have ss-tunnel; } || need+=(shadowsocks-libev)
have ss-v2ray-plugin || need+=(shadowsocks-v2ray-plugin)
{ have kcptun-client && have kcptun-server; } || need+=(kcptun)
if [ "${#need[@]}" -eq 0 ]; then
  echo "bench deps: all present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "bench deps missing (${need[*]}); run this script as root, or install them yourself" >&2
  exit 1
fi
echo "bench deps: installing ${need[*]}"
# The Debian packages ship services (shadowsocks-libev.service, iperf3's):
# policy-rc.d answering 101 stops invoke-rc.d from starting them, so no
# daemon grabs a port or burns CPU beside the benchmark. Only a file we
# created ourselves is removed afterwards.
created_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  created_policy=1
fi
cleanup() { if [ "$created_policy" -eq 1 ]; then rm -f /usr/sbin/policy-rc.d; fi; }
trap cleanup EXIT
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "bench deps: installed"

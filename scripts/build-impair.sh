#!/usr/bin/env bash
# Builds the lab's link emulator (native/tools/impair/) into native/build/impair
# with the system C compiler. A plain binary, not part of the N-API addon: it
# runs on its own under `ip netns exec` and needs nothing from Node.
# test/helpers/impair-lab.ts calls this when the binary is missing or older
# than its sources; scripts/install-test-deps.sh calls it for CI.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
src="$root/native/tools/impair"
out="$root/native/build/impair"
mkdir -p "$root/native/build"
# Built aside and renamed: two test files may build at once, and a process
# may be running the old binary.
tmp="$(mktemp "$out.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
"${CC:-cc}" -std=gnu11 -D_GNU_SOURCE -O2 -Wall -Wextra -o "$tmp" "$src"/*.c -lm
chmod 755 "$tmp"
mv "$tmp" "$out"
echo "built $out"

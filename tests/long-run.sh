#!/usr/bin/env bash
# The long robustness runs, on demand (not in CI): 1,000 kill -9s while mail flows, then ten
# minutes per libFuzzer target. Needs the plain and ASan builds (.ci/test makes them).
#   bash tests/long-run.sh            DRIPD_FAULT_KILLS and DRIPD_FUZZ_SECONDS override
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
[ -x build/dripd ] || .ci/build build
[ -x build-asan/dripd ] || .ci/build build-asan -DDRIPD_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
start=$SECONDS
DRIPD_FAULT_KILLS=${DRIPD_FAULT_KILLS:-1000} DRIPD_BUILD="$root/build-asan" \
	DRIPD_PLAIN_BUILD="$root/build" /usr/bin/python3 -m pytest -q -s -ra tests/fault/test_kill.py
echo "== long kill run: $((SECONDS - start))s"
start=$SECONDS
.ci/fuzz "${DRIPD_FUZZ_SECONDS:-600}"
echo "== long fuzz run: $((SECONDS - start))s"

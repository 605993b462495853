#!/usr/bin/env bash
# Run the C extensions' tests and the hostile-input fuzz under AddressSanitizer + UndefinedBehaviorSanitizer.
#
# The C files (`hatch_build.SOURCES`) parse bytes that come from clients: a memory error there is a host crash, not
# a typed refusal. This builds each of them with `-fsanitize=address,undefined` into a scratch copy of the package
# (the normal build in src/ is left alone), puts that copy first on PYTHONPATH, preloads libasan, has Python
# allocate with the system malloc (PYTHONMALLOC=malloc, so ASan sees every object's memory) and runs the native
# tests plus tests/spacetime/test_native_fuzz.py with NATIVE_FUZZ_SCALE times its normal case count. Any sanitizer
# report ends the run with status 86. docs/verification.md ("The C code under AddressSanitizer and UBSan")
# says what it covers and how to read it.
#
# Usage: scripts/sanitize-native.sh [scale] [extra pytest args]   e.g. scripts/sanitize-native.sh 50 -x
#   scale: the fuzz's case count multiplier (default 20; 1 is the normal suite's count)
#   PYTHON (default .venv/bin/python) and CC (default gcc) may be set.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
cc=${CC:-gcc}
scale=20
if [[ $# -gt 0 && $1 =~ ^[0-9]+$ ]]; then
    scale=$1
    shift
fi

libasan=$("$cc" -print-file-name=libasan.so)
if [[ ! -e "$libasan" ]]; then
    echo "sanitize-native: $cc has no libasan.so (install gcc's libasan); nothing was run" >&2
    exit 2
fi

scratch=$(mktemp -d "${TMPDIR:-/tmp}/sanitize-native.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
cp -r "$root/src/autopilot_sync" "$scratch/"
find "$scratch" \( -name '*.so' -o -name '*.partial' \) -delete
find "$scratch" -name __pycache__ -prune -exec rm -rf {} +

include=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
suffix=$("$python" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX") or ".so")')
sources=$(cd "$root" && "$python" -c 'import hatch_build; print(*hatch_build.SOURCES)')
for source in $sources; do
    stem=$(basename "$source" .c)
    target="$scratch/autopilot_sync/spacetime/$stem$suffix"
    # float-cast-overflow is not in gcc's "undefined" group; -fno-sanitize-recover makes every UB report fatal
    "$cc" -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all \
        -shared -fPIC "-I$include" "$root/$source" -o "$target"
    echo "sanitize-native: built $target"
done

# a report ends the process with status 86 (not a test failure's 1, not a signal); pytest runs with --capture=sys
# so that what the sanitizers write to file descriptor 2 reaches this script's stderr
export LD_PRELOAD="$libasan"
export ASAN_OPTIONS="detect_leaks=0:strict_string_checks=1:halt_on_error=1:exitcode=86"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=86"
export PYTHONMALLOC=malloc
export PYTHONPATH="$scratch${PYTHONPATH:+:$PYTHONPATH}"
export NATIVE_FUZZ_SCALE="$scale"
export NATIVE_SANITIZED_DIR="$scratch"

# the sanitized copies, not the normal build, are the ones imported (test_native_fuzz.py checks it too)
"$python" -c 'import os, autopilot_sync.spacetime._bsatn as b, autopilot_sync.spacetime._rowlist as r
for m in (b, r):
    assert m.__file__.startswith(os.environ["NATIVE_SANITIZED_DIR"]), m.__file__
    print("sanitize-native: imports", m.__file__)'

cd "$root"
status=0
# the suite's per-test timeout (300 s) is for the normal build: under ASan, at `scale` times the cases, it scales too
"$python" -m pytest -q -p no:cacheprovider -o addopts= --capture=sys --timeout=$((300 * scale)) \
    tests/spacetime/test_native_fuzz.py tests/spacetime/test_native_leaks.py tests/spacetime/test_bsatn_native.py \
    tests/spacetime/test_bsatn_product_decoder.py tests/spacetime/test_bsatn_product_encoder.py \
    tests/spacetime/test_bsatn_properties.py tests/spacetime/test_bsatn_args_checker.py tests/spacetime/test_rowlist.py \
    tests/spacetime/test_native_findings.py tests/spacetime/test_zero_size_budget.py tests/client/test_lazy_rows.py \
    tests/host/test_log_table.py "$@" || status=$?

case $status in
0) echo "sanitize-native: every test passed, no sanitizer report" ;;
86) echo "sanitize-native: SANITIZER REPORT (above): a memory error or undefined behaviour in the C code" >&2 ;;
*) echo "sanitize-native: the tests failed (status $status)" >&2 ;;
esac
exit "$status"

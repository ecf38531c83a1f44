# tests/lib.sh: shared helpers for the integration tests, which drive the real
# binary (passed as $1 by ctest) on the real pages in tests/data.
set -u
OCRPOOL=${1:?usage: $0 path/to/ocrpool}
OCRPOOL=$(readlink -f "$OCRPOOL")
DATA=$(pwd)/tests/data
TMP=$(mktemp -d /tmp/ocrpool-test.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
# ocrpool's scratch directories go here, so a test can see none is left behind.
export TMPDIR=$TMP/scratch
mkdir -p "$TMPDIR"
PASSED=0
FAILED=0
# ASan's quarantine would hold freed memory and blur what memory tests measure.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}:quarantine_size_mb=0

pass() { PASSED=$((PASSED + 1)); echo "ok: $*"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL: $*"; }

# check DESCRIPTION COMMAND...: passes when the command succeeds.
check() {
  local what=$1
  shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}

# run_ocr OUTFILE ERRFILE ARGS...: runs ocrpool ocr, stores stdout/stderr,
# sets RC. A status of 128 or more (a signal, a core dump) is always a failure.
run_ocr() {
  local out=$1 err=$2
  shift 2
  "$OCRPOOL" ocr "$@" >"$out" 2>"$err"
  RC=$?
  if [ "$RC" -ge 128 ]; then
    fail "ocrpool ocr $* died with status $RC"
    cat "$err"
  fi
  if grep -q 'ERROR: \(Address\|Leak\|Undefined\)Sanitizer\|runtime error:' "$err"; then
    fail "sanitizer report from ocrpool ocr $*"
    cat "$err"
  fi
}

done_testing() {
  echo "$PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ] && [ "$PASSED" -gt 0 ]
}

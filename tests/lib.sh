# tests/lib.sh: shared helpers for the integration tests, which drive the real
# binary (passed as $1 by ctest) on the real pages in tests/data.
set -u
OCRPOOL=${1:?usage: $0 path/to/ocrpool}
OCRPOOL=$(readlink -f "$OCRPOOL")
DATA=$(pwd)/tests/data
TMP=$(mktemp -d /tmp/ocrpool-test.XXXXXX)
trap '[ -n "${KEEP_TMP:-}" ] || rm -rf "$TMP"' EXIT
# ocrpool's scratch directories go here, so a test can see none is left behind.
export TMPDIR=$TMP/scratch
mkdir -p "$TMPDIR"
PASSED=0
FAILED=0
# ASan's quarantine would hold freed memory and blur what memory tests measure.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}:quarantine_size_mb=0

pass() { PASSED=$((PASSED + 1)); echo "ok: $*"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL: $*"; }

# check DESCRIPTION COMMAND...: passes when the command succeeds; returns its verdict.
check() {
  local what=$1
  shift
  if "$@"; then pass "$what"; else fail "$what"; return 1; fi
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

# skip_if_sanitized: a memory test measures real memory, which AddressSanitizer's
# shadow memory and quarantine distort beyond any budget; such tests run in the
# plain build (admission's logic still runs under ASan in every other test).
skip_if_sanitized() {
  if [ -n "${OCRPOOL_SANITIZED:-}" ]; then
    echo "skipped: memory figures are meaningless under AddressSanitizer (checked in the plain build)"
    exit 77
  fi
}

done_testing() {
  echo "$PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ] && [ "$PASSED" -gt 0 ]
}

# ---- a real server on loopback ----

# start_server DATA_DIR [ARGS...]: starts `ocrpool serve` on a free port, waits
# until /healthz answers, sets SERVER_PID and BASE (http://127.0.0.1:PORT).
start_server() {
  local dir=$1
  shift
  rm -f "$TMP/port"
  "$OCRPOOL" serve --listen 127.0.0.1:0 --port-file "$TMP/port" --data-dir "$dir" "$@" 2>>"$TMP/server.log" &
  SERVER_PID=$!
  for _ in $(seq 1 100); do
    if [ -s "$TMP/port" ]; then
      BASE="http://127.0.0.1:$(cat "$TMP/port")"
      curl -fs "$BASE/healthz" >/dev/null && return 0
    fi
    sleep 0.1
  done
  fail "the server did not start"
  cat "$TMP/server.log"
  return 1
}

# stop_server: SIGTERM, wait, and check it exited 0 without a sanitizer report.
stop_server() {
  kill -TERM "$SERVER_PID" 2>/dev/null
  wait "$SERVER_PID"
  local rc=$?
  check "the server exits 0 on SIGTERM" test "$rc" -eq 0
  if grep -q 'ERROR: \(Address\|Leak\|Undefined\)Sanitizer\|runtime error:' "$TMP/server.log"; then
    fail "sanitizer report from the server"
    grep -A30 'Sanitizer\|runtime error' "$TMP/server.log" | head -60
  fi
}

# wait_task ID [SECONDS]: polls until the task has finished; prints its status.
wait_task() {
  local id=$1 limit=${2:-120} status=""
  for _ in $(seq 1 $((limit * 10))); do
    status=$(curl -s "${AUTH[@]}" "$BASE/v1/tasks/$id" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])' 2>/dev/null)
    case $status in succeeded | failed | cancelled) echo "$status"; return 0 ;; esac
    sleep 0.1
  done
  echo "timeout:$status"
}

# wait_started ID [SECONDS]: waits until a page of the task has started (a
# page_started event), so that a test acts while it runs, however loaded the
# machine is.
wait_started() {
  for _ in $(seq 1 $((${2:-30} * 20))); do
    curl -s "${AUTH[@]}" "$BASE/v1/tasks/$1/events" | grep -q '"page_started"' && return 0
    sleep 0.05
  done
  return 1
}

# wait_for SECONDS COMMAND...: runs COMMAND every 0.1 s until it succeeds
# (returns 0) or SECONDS have passed (returns 1). Tests wait with it on a state
# they can observe (an event recorded, a worker busy), never on a fixed sleep.
wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}

# has_event ID TYPE: the task's events include one of TYPE.
has_event() {
  curl -s "${AUTH[@]}" "$BASE/v1/tasks/$1/events" |
    python3 -c 'import json,sys; sys.exit(not any(e["type"] == sys.argv[1] for e in json.load(sys.stdin)["events"]))' "$2" \
      2>/dev/null
}

# task_status ID: prints the task's status.
task_status() {
  curl -s "${AUTH[@]}" "$BASE/v1/tasks/$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])' 2>/dev/null
}

# busy_workers N: at least N workers are busy, as /v1/memory shows them.
busy_workers() {
  [ "$(curl -s "${AUTH[@]}" "$BASE/v1/memory" |
    python3 -c 'import json,sys; print(sum(w["state"] == "busy" for w in json.load(sys.stdin)["workers"]))' 2>/dev/null)" \
    -ge "$1" ] 2>/dev/null
}

# http_code_is URL CODE [CURL ARGS...]: the URL answers with HTTP status CODE.
http_code_is() {
  local url=$1 code=$2
  shift 2
  [ "$(curl -s -o /dev/null -w '%{http_code}' "${AUTH[@]}" "$@" "$url")" = "$code" ]
}

# submit FILE QUERY: posts the file raw, prints the new task's id.
submit() {
  curl -s "${AUTH[@]}" -X POST --data-binary "@$1" -H 'Content-Type: application/octet-stream' "$BASE/v1/tasks?$2" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'
}
AUTH=()

# tests/lib.sh: shared helpers for the integration tests, which drive the real
# binary (passed as $1 by ctest) on the real pages in tests/data.
set -u
OCRPOOL=${1:?usage: $0 path/to/ocrpool}
OCRPOOL=$(readlink -f "$OCRPOOL")
DATA=$(pwd)/tests/data
TMP=$(mktemp -d /tmp/ocrpool-test.XXXXXX)
# At exit: the test's databases (PostgreSQL runs) and files go, unless KEEP_TMP.
cleanup() {
  [ -z "${KEEP_TMP:-}" ] || return 0
  [ ! -s "$TMP/pg-databases" ] || drop_databases
  rm -rf "$TMP"
}
trap cleanup EXIT
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
  if [ "$FAILED" -gt 0 ] && [ -s "$TMP/server.log" ]; then
    echo "---- the server's log (last 80 lines) ----"
    tail -n 80 "$TMP/server.log"
  fi
  [ "$FAILED" -eq 0 ] && [ "$PASSED" -gt 0 ]
}

# ---- the store: SQLite, or PostgreSQL ----
# ctest runs each server test twice: on SQLite (ocrpool.db in the data
# directory) and, with OCRPOOL_TEST_PG naming the state directory of
# tests/pg.sh's cluster, on PostgreSQL. There each data directory gets a
# database of its own, made on first use, so that a server started again on the
# same directory finds its tasks, and dropped when the test ends.
PG_URL=""
if [ -n "${OCRPOOL_TEST_PG:-}" ]; then
  PG_URL=$(cat "$OCRPOOL_TEST_PG/url" 2>/dev/null)
  if [ -z "$PG_URL" ]; then
    echo "FAIL: no PostgreSQL for this run: $OCRPOOL_TEST_PG/url is missing (bash tests/pg.sh start $OCRPOOL_TEST_PG)"
    exit 1
  fi
  if ! why=$(psql -XAtq -d "$PG_URL" -c 'SELECT 1' 2>&1); then
    echo "FAIL: PostgreSQL at $PG_URL is unreachable: $why"
    exit 1
  fi
fi

# on_postgres: this run's store is PostgreSQL.
on_postgres() { [ -n "$PG_URL" ]; }

# store_url DIR: prints the URL of DIR's database (PostgreSQL runs), making
# the database on first use; its name is a hash of the test and DIR, unique
# among the tests that share the cluster.
store_url() {
  local name base query=""
  name=ocrpool_$(printf '%s' "$TMP:$(realpath -m "$1")" | sha1sum | cut -c1-16)
  if ! grep -qx "$name" "$TMP/pg-databases" 2>/dev/null; then
    psql -XAtq -v ON_ERROR_STOP=1 -d "$PG_URL" -c "CREATE DATABASE $name" >&2 || return 1
    echo "$name" >>"$TMP/pg-databases"
  fi
  base=${PG_URL%%\?*}
  [[ $PG_URL != *\?* ]] || query="?${PG_URL#*\?}"
  echo "${base%/*}/$name$query"
}

# drop_databases: drops the databases store_url made (FORCE: a server the test
# left running must not keep one alive).
drop_databases() {
  local name
  while read -r name; do
    psql -XAtq -d "$PG_URL" -c "DROP DATABASE IF EXISTS $name WITH (FORCE)" >/dev/null
  done <"$TMP/pg-databases"
}

# store_args DIR: sets STORE_ARGS to the flags that put a server on DIR on this
# run's store: none on SQLite, --store URL on PostgreSQL. For servers started
# without start_server: "$OCRPOOL" serve --data-dir DIR "${STORE_ARGS[@]}" ...
store_args() {
  STORE_ARGS=()
  on_postgres || return 0
  local url
  url=$(store_url "$1") || { fail "no PostgreSQL database for $1"; return 1; }
  STORE_ARGS=(--store "$url")
}

# db DIR SQL: runs SQL on the store of the server on DIR and prints the rows as
# sqlite3 does: columns joined by '|', one row a line, no header. The SQL must
# mean the same to both databases (standard SQL, no SQLite-only functions).
db() {
  if on_postgres; then
    local url
    url=$(store_url "$1") || return 1
    psql -XAtq -F'|' -v ON_ERROR_STOP=1 -d "$url" -c "$2"
  else
    sqlite3 "$1/ocrpool.db" "$2"
  fi
}

# ---- a real server on loopback ----

# start_server DATA_DIR [ARGS...]: starts `ocrpool serve` on a free port and
# this run's store, waits until /healthz answers, sets SERVER_PID and BASE
# (http://127.0.0.1:PORT).
start_server() {
  local dir=$1
  shift
  rm -f "$TMP/port"
  store_args "$dir" || return 1
  "$OCRPOOL" serve --listen 127.0.0.1:0 --port-file "$TMP/port" --data-dir "$dir" "${STORE_ARGS[@]}" "$@" \
    2>>"$TMP/server.log" &
  SERVER_PID=$!
  # A slow start (the sanitizers on a loaded machine) gets a minute; a server
  # that exited is reported at once.
  for _ in $(seq 1 600); do
    if [ -s "$TMP/port" ]; then
      BASE="http://127.0.0.1:$(cat "$TMP/port")"
      curl -fs "$BASE/healthz" >/dev/null && return 0
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || break
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

# draining_seen: /readyz answers 503 because the server drains. A 503 alone
# is not that: a server whose first worker has not started says "starting"
# too, and a signal is acted on a loop turn after it arrives.
draining_seen() { curl -s "$BASE/readyz" | grep -q '"detail":"draining'; }

# submit FILE QUERY: posts the file raw, prints the new task's id (nothing if
# refused). Read with sed, not a python per call: on a loaded machine that cost
# half a second a task, and tests that queue many tasks must queue them faster
# than the workers finish them. The answer is compact JSON, "id" first.
submit() {
  curl -s "${AUTH[@]}" -X POST --data-binary "@$1" -H 'Content-Type: application/octet-stream' "$BASE/v1/tasks?$2" |
    sed -n 's/^{"id":"\([0-9a-f]*\)".*/\1/p'
}
AUTH=()

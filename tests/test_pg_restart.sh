#!/usr/bin/env bash
# PostgreSQL restarted under load (issue 12): the server outlives the outage,
# submissions while the database is down get 503 with Retry-After (nothing is
# accepted that could not be recorded), and every task acknowledged before,
# during or after the outage ends succeeded with each page done once. It runs
# on a cluster of its own (tests/pg.sh), never the run's shared one, since it
# stops the database.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/pg.sh"

pg_cluster_start "$TMP/pgc" || { fail "PostgreSQL did not start (see above)"; done_testing; exit 1; }
trap 'pg_cluster_stop "$TMP/pgc"; cleanup' EXIT
base_url=$(pg_cluster_url "$TMP/pgc")
psql -XAtq -v ON_ERROR_STOP=1 -d "$base_url" -c "CREATE DATABASE ocrpool_restart" ||
  { fail "cannot create the database"; done_testing; exit 1; }
url="${base_url/\/postgres\?//ocrpool_restart?}"

export OCRPOOL_NULL_OPTS=sleep_ms=300 # 2 pages a task, 2 workers: the work outlasts the outage
qpdf --empty --pages "$DATA/linn.pdf" "$DATA/linn.pdf" -- "$TMP/two.pdf"
rm -f "$TMP/port"
"$OCRPOOL" serve --listen 127.0.0.1:0 --port-file "$TMP/port" --data-dir "$TMP/var" --store "$url" --workers 2 \
  2>>"$TMP/server.log" &
SERVER_PID=$!
wait_for 30 test -s "$TMP/port" || { fail "the server did not start"; cat "$TMP/server.log"; done_testing; exit 1; }
BASE="http://127.0.0.1:$(cat "$TMP/port")"
wait_for 30 curl -fs "$BASE/healthz" -o /dev/null

ids=()
for _ in $(seq 1 8); do ids+=("$(submit "$TMP/two.pdf" "engine=null")"); done
check "8 tasks acknowledged before the outage" test "$(printf '%s\n' "${ids[@]}" | grep -cx '[0-9a-f]\{32\}')" -eq 8
wait_started "${ids[0]}"

pg_cluster_down "$TMP/pgc" immediate # what a crash of the database leaves
code=$(curl -s -D "$TMP/h" -o "$TMP/b" -w '%{http_code}' -H 'Content-Type: application/octet-stream' \
  --data-binary "@$TMP/two.pdf" "$BASE/v1/tasks?engine=null")
check "database down: a submission gets 503 (got $code)" test "$code" = 503
check "... with Retry-After" grep -qi '^Retry-After: [0-9]' "$TMP/h"
check "... and a problem+json body" python3 -c "import json; assert json.load(open('$TMP/b'))['status'] == 503"
check "... while the server stays up (/healthz 200)" \
  test "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/healthz")" = 200
code=$(curl -s -o /dev/null -w '%{http_code}' "$BASE/v1/tasks/${ids[0]}")
check "... and reading a task gets 503, not 500 (got $code)" test "$code" = 503
# Down until the server's own loop has met the outage (its review of the
# store, each store.poll) and logged it: a shorter outage may fall between
# two of its turns.
check "the server logs the outage" wait_for 30 grep -q "PostgreSQL" "$TMP/server.log"

pg_cluster_up "$TMP/pgc" || { fail "PostgreSQL did not come back"; done_testing; exit 1; }
for _ in $(seq 1 4); do ids+=("$(submit "$TMP/two.pdf" "engine=null")"); done
check "after the restart 4 more are acknowledged" \
  test "$(printf '%s\n' "${ids[@]}" | grep -cx '[0-9a-f]\{32\}')" -eq 12

ok=0
for id in "${ids[@]}"; do [ "$(wait_task "$id" 120)" = succeeded ] && ok=$((ok + 1)); done
check "every acknowledged task succeeded ($ok of 12)" test "$ok" -eq 12
check "... each page recorded done once" python3 -c "
import json, urllib.request, collections
for id in '${ids[*]}'.split():
    ev = json.load(urllib.request.urlopen('$BASE/v1/tasks/%s/events' % id))['events']
    done = collections.Counter(e['details']['page'] for e in ev if e['type'] == 'page_done')
    assert done == {1: 1, 2: 1}, (id, done)"
stop_server
done_testing

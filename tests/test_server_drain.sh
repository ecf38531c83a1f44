#!/usr/bin/env bash
# SIGTERM drains: new submissions get 503 with Retry-After and /readyz says so,
# the running page finishes and is recorded, no new page starts, the server
# exits 0; started again, the task finishes without redoing its done page.
source "$(dirname "$0")/lib.sh"

export OCRPOOL_NULL_OPTS=sleep_ms=4000 # long enough for the checks below to run while it does
qpdf --empty --pages "$DATA/linn.pdf" "$DATA/linn.pdf" -- "$TMP/two.pdf"
start_server "$TMP/var" --workers 1 || { done_testing; exit 1; }
id=$(submit "$TMP/two.pdf" "engine=null")
wait_started "$id"
other=$(submit "$DATA/phototest.tif" "engine=null") # queued behind it: one worker
kill -TERM "$SERVER_PID"
check "after SIGTERM /readyz turns 503, draining" wait_for 10 draining_seen
code=$(curl -s -D "$TMP/h" -o "$TMP/b" -w '%{http_code}' -H 'Content-Type: application/octet-stream' \
  --data-binary "@$DATA/phototest.tif" "$BASE/v1/tasks")
check "while draining, a submission gets 503 (got $code)" test "$code" = 503
check "... with Retry-After" grep -qi '^Retry-After: [0-9]' "$TMP/h"
check "/readyz says not ready while draining" test "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/readyz")" = 503
check "/healthz still answers" test "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/healthz")" = 200
# A cancel wakes the service's loop while it drains: the wake must not keep
# it from reading the running page's reply (it once spun on it until the
# drain timeout, and the page was lost to the restart).
curl -s -o /dev/null --max-time 3 -X DELETE "$BASE/v1/tasks/$other"
wait "$SERVER_PID"
check "the drained server exits 0" test $? -eq 0
check "its running page finished and was recorded" \
  test "$(db "$TMP/var" "select count(*) from pages where task_id='$id' and state='done'")" = 1
check "the other page was not started" \
  test "$(db "$TMP/var" "select count(*) from task_events where task_id='$id' and type='page_started'")" = 1

start_server "$TMP/var" --workers 1 || { done_testing; exit 1; }
check "after a restart the task succeeds" test "$(wait_task "$id")" = succeeded
check "... each page done once" python3 -c "
import json, urllib.request, collections
ev=json.load(urllib.request.urlopen('$BASE/v1/tasks/$id/events'))['events']
done=collections.Counter(e['details']['page'] for e in ev if e['type']=='page_done')
assert done=={1:1, 2:1}, done"
stop_server

# ---- Ctrl-C in a terminal: SIGINT to the whole foreground process group. The
# server drains; its workers are in their own groups, so the running page
# finishes instead of dying with the signal.
rm -f "$TMP/port"
store_args "$TMP/var3" || { done_testing; exit 1; }
setsid "$OCRPOOL" serve --listen 127.0.0.1:0 --port-file "$TMP/port" --data-dir "$TMP/var3" "${STORE_ARGS[@]}" --workers 1 \
  2>"$TMP/ctrlc.log" &
SERVER_PID=$! # setsid did not fork (a background job is no group leader): the server leads its group
for _ in $(seq 1 100); do [ -s "$TMP/port" ] && curl -fs "http://127.0.0.1:$(cat "$TMP/port")/healthz" >/dev/null && break; sleep 0.1; done
BASE="http://127.0.0.1:$(cat "$TMP/port")"
id=$(submit "$TMP/two.pdf" "engine=null")
wait_started "$id"
check "the server leads its own process group" test "$(ps -o pgid= -p "$SERVER_PID" | tr -d ' ')" = "$SERVER_PID"
kill -INT -- "-$SERVER_PID"
wait "$SERVER_PID"
check "Ctrl-C: the server drains and exits 0" test $? -eq 0
check "... its running page finished and was recorded" \
  test "$(db "$TMP/var3" "select count(*) from pages where task_id='$id' and state='done'")" = 1
check "... no worker was killed by the signal" bash -c "! grep -q 'killed by signal' '$TMP/ctrlc.log'"

# ---- SIGTERM during a load of 20 tasks: exit 0 within drain_timeout and the
# workers' grace; started again, all 20 complete and no finished page ran twice.
export OCRPOOL_NULL_OPTS=sleep_ms=1000 # 40 pages, 2 workers: 20 s of work, stopped a few pages in
start_server "$TMP/var2" --workers 2 --drain-timeout 10 || { done_testing; exit 1; }
ids=()
for _ in $(seq 1 20); do ids+=("$(submit "$TMP/two.pdf" "engine=null")"); done
for _ in $(seq 1 300); do
  [ "$(db "$TMP/var2" "select count(*) from pages where state='done'" 2>/dev/null)" -ge 2 ] && break
  sleep 0.1
done
t0=$(date +%s.%N)
kill -TERM "$SERVER_PID"
wait "$SERVER_PID"
rc=$?
took=$(python3 -c "import time; print(round(time.time() - $t0, 1))")
check "SIGTERM under load: exit 0 (in $took s)" test "$rc" -eq 0
check "... within drain_timeout (10 s) and the workers' grace (5 s)" python3 -c "assert $took <= 15"
before=$(db "$TMP/var2" "select count(*) from pages where state='done'")
check "some pages finished before the stop, not all ($before of 40)" test "$before" -gt 0 -a "$before" -lt 40
start_server "$TMP/var2" --workers 2 || { done_testing; exit 1; }
ok=yes
for id in "${ids[@]}"; do [ "$(wait_task "$id" 120)" = succeeded ] || ok=no; done
check "after the restart all 20 tasks succeed" test "$ok" = yes
check "... and no page finished twice" test \
  "$(db "$TMP/var2" "select count(*) from task_events where type='page_done'")" = 40
stop_server
done_testing

#!/usr/bin/env bash
# kill -9 the server while 10 multi-page tasks are queued or running, start it
# again on the same data directory: every task completes, no finished page runs
# again (counted in the events), no result is missing or doubled.
source "$(dirname "$0")/lib.sh"

export OCRPOOL_NULL_OPTS=sleep_ms=300
qpdf --empty --pages "$DATA/linn.pdf" "$DATA/c02-22.pdf" "$DATA/linn.pdf" "$DATA/c02-22.pdf" -- "$TMP/four.pdf"
start_server "$TMP/var" --workers 2 || { done_testing; exit 1; }
ids=()
for _ in $(seq 1 10); do ids+=("$(submit "$TMP/four.pdf" "engine=null&format=txt,json")"); done
# Ids, not empty strings: a failed submission must stop here, not hang below.
check "10 tasks submitted" test "$(printf '%s\n' "${ids[@]}" | grep -cx '[0-9a-f]\{32\}')" -eq 10 ||
  { stop_server; done_testing; exit 1; }
# Kill once some pages are done and others are running.
check "a page is done before the kill" wait_for 60 has_event "${ids[0]}" page_done
workers=$(curl -s "$BASE/v1/memory" | python3 -c 'import json,sys; print(" ".join(str(w["pid"]) for w in json.load(sys.stdin)["workers"] if w["pid"]))')
kill -KILL "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null
done_before=$(curl -s "$BASE/healthz" >/dev/null 2>&1 && echo up || echo down)
check "the server is gone" test "$done_before" = down
# Workers notice their supervisor's end and exit by themselves.
workers_gone() { for p in $workers; do kill -0 "$p" 2>/dev/null && return 1; done; return 0; }
check "the old workers ($workers) exit by themselves" wait_for 30 workers_gone
start_server "$TMP/var" --workers 2 || { done_testing; exit 1; }
for id in "${ids[@]}"; do
  status=$(wait_task "$id" 120)
  check "task $id: $status" test "$status" = succeeded
  curl -s "$BASE/v1/tasks/$id/result?format=txt" -o "$TMP/r.txt"
  check "task $id: 4 pages in its text (3 form feeds)" test "$(tr -cd '\f' <"$TMP/r.txt" | wc -c)" -eq 3
  curl -s "$BASE/v1/tasks/$id/result?format=json" -o "$TMP/r.json"
  check "task $id: json pages 1-4, once each" python3 -c "
import json; d=json.load(open('$TMP/r.json')); assert [p['page'] for p in d['pages']]==[1,2,3,4], d"
  curl -s "$BASE/v1/tasks/$id/events" -o "$TMP/e.json"
  check "task $id: each page finished exactly once" python3 -c "
import json, collections
ev=json.load(open('$TMP/e.json'))['events']
done=collections.Counter(e['details']['page'] for e in ev if e['type']=='page_done')
assert sorted(done)==[1,2,3,4] and set(done.values())=={1}, done
assert ev[-1]['type']=='succeeded', ev[-1]"
done
check "some task was caught mid-way by the kill (a page run again after restart)" python3 -c "
import json, urllib.request, collections
again=0
for id in '${ids[*]}'.split():
    ev=json.load(urllib.request.urlopen('$BASE/v1/tasks/'+id+'/events'))['events']
    started=collections.Counter(e['details']['page'] for e in ev if e['type']=='page_started')
    again+=sum(1 for n in started.values() if n>1)
assert again>0, 'no page ran twice: the kill came too late to test anything'"

# The window a kill can hit at the end of a task: its results are written and
# its fragments removed, but its end is not yet recorded (one transaction).
# Made here by undoing the record of the end of the first task, which is what
# the store holds after such a kill. The next start must finish it from its
# results, without running a page again or assembling from fragments it lacks.
stop_server
id=${ids[0]}
started_before=$(db "$TMP/var" "SELECT count(*) FROM task_events WHERE task_id='$id' AND type='page_started'")
cp "$TMP/var/tasks/$id/result.txt" "$TMP/before.txt"
db "$TMP/var" "UPDATE tasks SET status='running', finished_at=0, resource_cleanup_completed=0 WHERE id='$id';
  DELETE FROM task_events WHERE task_id='$id' AND id > (SELECT max(id) FROM task_events WHERE task_id='$id' AND type='page_done');"
check "the first task looks unfinished, its fragments gone" test -z "$(ls "$TMP/var/tasks/$id" | grep '^p[0-9]')"
start_server "$TMP/var" --workers 2 || { done_testing; exit 1; }
check "an ended but unrecorded task succeeds on restart" test "$(wait_task "$id" 60)" = succeeded
check "its text result is unchanged" cmp "$TMP/before.txt" "$TMP/var/tasks/$id/result.txt"
started_after=$(db "$TMP/var" "SELECT count(*) FROM task_events WHERE task_id='$id' AND type='page_started'")
check "no page of it ran again ($started_before page starts before, $started_after after)" test "$started_before" -eq "$started_after"
check "its end is recorded once, last" python3 -c "
import json, urllib.request
ev=[e['type'] for e in json.load(urllib.request.urlopen('$BASE/v1/tasks/$id/events'))['events']]
assert ev.count('succeeded')==1 and ev[-1]=='succeeded' and ev.count('cleanup_completed')==1, ev"
stop_server

# ---- a task resumed after a restart keeps its failed pages' reasons ----
# Page 1 crashes its worker on every attempt and fails as worker_crashed
# while page 2 still runs; the server is killed then and started again. The
# task ends failed with its page's reason: before the page's reason was
# stored, a page that had failed before the restart came back as "internal".
export OCRPOOL_NULL_OPTS=crash_page=1,sleep_ms=20000
qpdf --empty --pages "$DATA/linn.pdf" "$DATA/linn.pdf" -- "$TMP/two.pdf"
start_server "$TMP/var5" --workers 2 || { done_testing; exit 1; }
fid=$(submit "$TMP/two.pdf" "engine=null")
check "page 1 fails, having crashed its worker each time, while page 2 runs" wait_for 60 has_event "$fid" page_failed
workers=$(curl -s "$BASE/v1/memory" | python3 -c 'import json,sys; print(" ".join(str(w["pid"]) for w in json.load(sys.stdin)["workers"] if w["pid"]))')
kill -KILL "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null
check "... the old workers exit by themselves" wait_for 30 workers_gone
unset OCRPOOL_NULL_OPTS
start_server "$TMP/var5" --workers 2 || { done_testing; exit 1; }
check "resumed after the kill, the task fails" test "$(wait_task "$fid" 60)" = failed
curl -s "$BASE/v1/tasks/$fid" >"$TMP/failed.json"
check "... as worker_crashed, its failed page's reason, not internal" \
  test "$(python3 -c 'import json,sys; print(json.load(sys.stdin)["failure_reason"])' <"$TMP/failed.json")" = worker_crashed \
  || cat "$TMP/failed.json"
stop_server
done_testing

#!/usr/bin/env bash
# Issue 11: a pool of 100 workers whose processes all die at once loses no
# job (the supervisor's event queue and poll set are sized from the worker
# count, where a fixed 64-event queue dropped the 65th worker's loss and left
# its task running for ever), and the worker count has a maximum,
# OP_SUPERVISOR_MAX_WORKERS (1024), that --workers and server.workers enforce.
source "$(dirname "$0")/lib.sh"

# 1. Past the maximum: refused at once, exit 2, with a message naming it.
# (timeout: a server that wrongly starts is stopped instead of waited for.)
timeout 20 "$OCRPOOL" serve --workers 2000 --listen 127.0.0.1:0 --data-dir "$TMP/never" >"$TMP/w.out" 2>"$TMP/w.err"
RC=$?
check "--workers 2000: exit 2" test "$RC" -eq 2
check "--workers 2000: the message names the maximum" grep -q -- '--workers 2000 is too many: at most 1024' "$TMP/w.err"
check "--workers 2000: no data directory was made" test ! -e "$TMP/never"
printf 'server:\n  workers: 2000\n' >"$TMP/many.yaml"
timeout 20 "$OCRPOOL" serve --config "$TMP/many.yaml" --listen 127.0.0.1:0 --data-dir "$TMP/never" >/dev/null 2>"$TMP/c.err"
RC=$?
check "server.workers: 2000 in the file: exit 2" test "$RC" -eq 2
check "... with file:line and the maximum" grep -q 'many.yaml:2: "workers": expected a whole number up to 1024' "$TMP/c.err"
OCRPOOL_SERVER_WORKERS=1025 "$OCRPOOL" config >/dev/null 2>"$TMP/e.err"
RC=$?
check "OCRPOOL_SERVER_WORKERS=1025: exit 2" test "$RC" -eq 2
check "1024 workers is allowed" bash -c "'$OCRPOOL' config --workers 1024 | grep -q '^server.workers  *1024 '"

# 2. 100 workers, each running the first attempt of a page that would take 10
# minutes (a retry takes none), all killed at once: every task still ends,
# succeeded after a retry.
N=100
export OCRPOOL_NULL_OPTS=sleep_ms=600000,sleep_attempts=1
start_server "$TMP/var" --workers "$N" --max-queue $((2 * N)) --page-timeout 900 || { done_testing; exit 1; }

python3 - "$BASE" "$N" "$DATA/phototest.tif" >"$TMP/ids" <<'PY' || fail "submitting $N tasks"
import json, sys, urllib.request
base, n, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
body = open(path, "rb").read()
for _ in range(n):
    req = urllib.request.Request(base + "/v1/tasks?engine=null&format=txt", data=body, method="POST",
                                 headers={"Content-Type": "application/octet-stream"})
    print(json.load(urllib.request.urlopen(req))["id"])
PY
check "$N tasks were accepted" test "$(wc -l <"$TMP/ids")" -eq "$N"

# tasks_where PREDICATE SECONDS: polls every task until PREDICATE (a Python
# expression over `t`, the task, and `ev`, its event types) holds for all of
# them or the time is up; prints how many it holds for.
tasks_where() {
  python3 - "$BASE" "$TMP/ids" "$1" "$2" <<'PY'
import json, sys, time, urllib.request
base, ids, pred, limit = sys.argv[1], open(sys.argv[2]).read().split(), sys.argv[3], float(sys.argv[4])
get = lambda path: json.load(urllib.request.urlopen(base + path))
pending, deadline = set(ids), time.monotonic() + limit
while pending and time.monotonic() < deadline:
    for i in sorted(pending):
        t = get("/v1/tasks/" + i)
        ev = [e["type"] for e in get("/v1/tasks/%s/events" % i)["events"]]
        if eval(pred):
            pending.discard(i)
    if pending:
        time.sleep(0.2)
print(len(ids) - len(pending))
PY
}

# Every page running: as many pages started as tasks, so every worker is busy.
running=$(tasks_where '"page_started" in ev' 300)
check "all $N pages run at once ($running started)" test "$running" -eq "$N"
workers=$(pgrep -P "$SERVER_PID" | wc -l)
check "$N worker processes run ($workers)" test "$workers" -eq "$N"
check "/v1/memory lists all $N, busy" wait_for 10 busy_workers "$N"

kill -KILL $(pgrep -P "$SERVER_PID")
ended=$(tasks_where 't["status"] in ("succeeded", "failed", "cancelled")' 240)
check "every task ended after all $N workers were killed at once ($ended of $N)" test "$ended" -eq "$N"
ok=$(tasks_where 't["status"] == "succeeded" and "retried" in ev' 1)
check "every task succeeded after a retry ($ok of $N)" test "$ok" -eq "$N"
check "the server saw $N crashes" python3 -c "
import json, urllib.request
m = json.load(urllib.request.urlopen('$BASE/v1/memory'))
assert m['workers_ended']['crash'] >= $N, m['workers_ended']"
check "no job outcome was lost" bash -c "! grep -q 'event queue' '$TMP/server.log'"
check "the server still serves" curl -fs -o /dev/null "$BASE/healthz"

stop_server
check "no stray worker after the server stopped" test -z "$(pgrep -P "$SERVER_PID" 2>/dev/null)"
done_testing

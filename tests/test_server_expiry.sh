#!/usr/bin/env bash
# Tasks that wait past --queue-timeout fail with queue_timeout; finished tasks
# and their files go after --retention-days (0 here: at once).
source "$(dirname "$0")/lib.sh"

export OCRPOOL_NULL_OPTS=sleep_ms=3000
start_server "$TMP/var" --workers 1 --queue-timeout 1 || { done_testing; exit 1; }
first=$(submit "$DATA/phototest.tif" "engine=null")
wait_started "$first"
second=$(submit "$DATA/phototest.tif" "engine=null")
check "the running task still succeeds" test "$(wait_task "$first")" = succeeded
check "the task stuck behind it fails" test "$(wait_task "$second")" = failed
check "... with reason queue_timeout" bash -c "curl -s '$BASE/v1/tasks/$second' | grep -q '\"failure_reason\":\"queue_timeout\"'"
stop_server

# Priorities: higher first, first come first served within one.
export OCRPOOL_NULL_OPTS=sleep_ms=700
start_server "$TMP/var3" --workers 1 || { done_testing; exit 1; }
# A 6-page task keeps the one worker busy for 4 s, long enough for the rest to queue.
args=()
for _ in 1 2 3 4 5 6; do args+=("$DATA/linn.pdf"); done
qpdf --empty --pages "${args[@]}" -- "$TMP/six.pdf"
busy=$(submit "$TMP/six.pdf" "engine=null")
wait_started "$busy"
low=$(submit "$DATA/phototest.tif" "engine=null&priority=1")
high1=$(submit "$DATA/phototest.tif" "engine=null&priority=9")
high2=$(submit "$DATA/phototest.tif" "engine=null&priority=9")
for id in "$busy" "$low" "$high1" "$high2"; do wait_task "$id" >/dev/null; done
order=$(for id in "$low" "$high1" "$high2"; do
  curl -s "$BASE/v1/tasks/$id" | python3 -c 'import json,sys; t=json.load(sys.stdin); print(t["started_at"], t["priority"], t["id"])'
done | sort | awk '{printf "%s ", $3}')
echo "start order: $order (want $high1 $high2 $low)"
check "priority 9 tasks start first, in order, then priority 1" test "$order" = "$high1 $high2 $low "
stop_server

export OCRPOOL_NULL_OPTS=sleep_ms=10
start_server "$TMP/var2" --workers 1 --retention-days 0 || { done_testing; exit 1; }
id=$(submit "$DATA/phototest.tif" "engine=null")
gone=""
for _ in $(seq 1 50); do
  if [ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/v1/tasks/$id")" = 404 ]; then gone=yes; break; fi
  sleep 0.1
done
check "with zero retention a finished task is removed" test -n "$gone"
check "... and its files" test ! -e "$TMP/var2/tasks/$id"
stop_server
done_testing

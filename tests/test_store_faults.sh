#!/usr/bin/env bash
# A store that fails: the service's writes fail every 11th statement (the test
# hook OCRPOOL_TEST_STORE_FAIL_EVERY). Each scheduler callback's writes are
# one transaction, rolled back whole on a failed statement and written again:
# every task still ends, and the store never holds half a record (a page's
# state without its event, an event without its page, two ends).
source "$(dirname "$0")/lib.sh"

export OCRPOOL_NULL_OPTS=sleep_ms=20
export OCRPOOL_TEST_STORE_FAIL_EVERY=11
start_server "$TMP/var" --workers 2 || { done_testing; exit 1; }
unset OCRPOOL_TEST_STORE_FAIL_EVERY

qpdf --empty --pages "$DATA/linn.pdf" "$DATA/linn.pdf" -- "$TMP/two.pdf"
ids=()
for i in $(seq 1 8); do
  ids+=("$(submit "$TMP/two.pdf" "engine=null")")
  ids+=("$(submit "$DATA/phototest.tif" "engine=null")")
done
statuses=""
for id in "${ids[@]}"; do statuses+="$(wait_task "$id") "; done
check "every task succeeds though the store failed now and then ($statuses)" \
  bash -c "[ \"\$(echo '$statuses' | tr ' ' '\n' | grep -c '^succeeded$')\" -eq ${#ids[@]} ]"
check "the faults were hit, and the writes tried again" grep -q 'store: recording .* failed (try 1 of' "$TMP/server.log"
stop_server

# What was committed, task by task: all of a record or none of it.
q() { db "$TMP/var" "$1"; }
bad=""
for id in "${ids[@]}"; do
  total=$(q "SELECT pages_total FROM tasks WHERE id='$id'")
  done_rows=$(q "SELECT count(*) FROM pages WHERE task_id='$id' AND state='done'")
  all_rows=$(q "SELECT count(*) FROM pages WHERE task_id='$id'")
  done_events=$(q "SELECT count(*) FROM task_events WHERE task_id='$id' AND type='page_done'")
  started=$(q "SELECT count(*) FROM task_events WHERE task_id='$id' AND type='page_started'")
  attempts=$(q "SELECT attempts FROM tasks WHERE id='$id'")
  ends=$(q "SELECT count(*) FROM task_events WHERE task_id='$id' AND type='succeeded'")
  firsts=$(q "SELECT count(*) FROM task_events WHERE task_id='$id' AND type='started'")
  [ "$total" -ge 1 ] && [ "$done_rows" = "$total" ] && [ "$all_rows" = "$total" ] && [ "$done_events" = "$total" ] &&
    [ "$started" = "$attempts" ] && [ "$ends" = 1 ] && [ "$firsts" = 1 ] ||
    bad+="$id: pages $total, rows done $done_rows of $all_rows, page_done events $done_events, page_started $started for $attempts attempts, ends $ends, starts $firsts; "
done
check "no task holds half a record ${bad:-}" test -z "$bad" || {
  first=${bad%%:*}
  q "SELECT status, failure_reason, error FROM tasks WHERE id='$first'"
  q "SELECT type, details FROM task_events WHERE task_id='$first'"
  grep "$first" "$TMP/server.log" | head -20
}

done_testing

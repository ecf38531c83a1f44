#!/usr/bin/env bash
# Acceptance 3: killing a worker in the middle of a page loses nothing; a page
# that kills every worker fails after the crash-attempt limit with a clear
# reason, and the other pages still complete.
source "$(dirname "$0")/lib.sh"

qpdf --empty --pages "$DATA/linn.pdf" "$DATA/c02-22.pdf" "$DATA/linn.pdf" "$DATA/c02-22.pdf" -- "$TMP/four.pdf"
pages_ok() { # FILE N: the json result has pages 1..N, none with an error
  python3 -c "
import json,sys
d=json.load(open('$1'))
assert [p['page'] for p in d['pages']]==list(range(1,$2+1)), d
assert all('error' not in p for p in d['pages']), d
"
}

# 1. The null engine kills its worker (SIGKILL to itself) on page 2, first attempt only.
OCRPOOL_NULL_OPTS=crash_page=2,crash_attempts=1 \
  run_ocr "$TMP/a.json" "$TMP/a.err" "$TMP/four.pdf" --engine null -f json -j 2 --stats
check "a crash on page 2's first run: exit 0" test "$RC" -eq 0
check "a crash on page 2's first run: all 4 pages done" pages_ok "$TMP/a.json" 4
check "the worker was restarted" grep -q '"worker_restarts":[1-9]' "$TMP/a.err"

# 2. A page that kills every worker: it fails, the others complete.
OCRPOOL_NULL_OPTS=crash_page=2 \
  run_ocr "$TMP/b.json" "$TMP/b.err" "$TMP/four.pdf" --engine null -f json -j 2
check "a page that always crashes: exit 4 (OCR failure)" test "$RC" -eq 4
check "the message names page 2 and the crashes" grep -q 'page 2: the page crashed its worker 3 times' "$TMP/b.err"
check "the message says how the worker died" grep -q 'signal 9' "$TMP/b.err"
check "the other pages still complete" python3 -c "
import json
d=json.load(open('$TMP/b.json'))
assert [p['page'] for p in d['pages']]==[1,2,3,4]
assert 'error' in d['pages'][1] and all('error' not in d['pages'][i] for i in (0,2,3)), d
"

# 3. SIGKILL from outside, in the middle of a real Tesseract page.
# The victim is a worker that has loaded the model for its first page (its
# info log says so, with its pid) and so is in the middle of that page.
"$OCRPOOL" ocr "$TMP/four.pdf" -f json -j 2 -o "$TMP/c.json" --stats --log-level info 2>"$TMP/c.err" &
main=$!
wait_for 120 grep -q 'msg="loaded model' "$TMP/c.err"
victim=$(sed -n 's/.* pid=\([0-9]*\) msg="loaded model.*/\1/p' "$TMP/c.err" | head -1)
if [ -n "$victim" ]; then kill -KILL "$victim"; fi
wait "$main"
RC=$?
check "a worker was found and killed mid-page" test -n "$victim"
check "the document still completes: exit 0" test "$RC" -eq 0
check "all 4 pages are in the result" pages_ok "$TMP/c.json" 4
check "the kill was seen and the worker replaced" grep -q '"worker_restarts":[1-9]' "$TMP/c.err"
check "page text survived the kill" python3 -c "
import json
d=json.load(open('$TMP/c.json'))
assert all(len(p['text']) > 50 for p in d['pages']), [len(p['text']) for p in d['pages']]
"
check "no worker is left running" test -z "$(pgrep -P "$main" 2>/dev/null)"

# 4. A page past --page-timeout: its worker is killed, the page is tried again
# on a fresh worker, and when that times out too it fails as a timeout: a
# deterministic timeout is not worth a third page timeout of CPU (issue 18).
OCRPOOL_NULL_OPTS=sleep_ms=5000 run_ocr "$TMP/d.txt" "$TMP/d.err" "$DATA/phototest.tif" --engine null --page-timeout 1 -j 1
check "a page past its timeout: exit 4" test "$RC" -eq 4
check "the message says it timed out" grep -q 'ran past its timeout' "$TMP/d.err"
check "... twice, and was not tried a third time" grep -q 'past the page timeout 2 times, each on a fresh worker' "$TMP/d.err" ||
  cat "$TMP/d.err"

# 5. An idle worker that stops answering heartbeats is killed and replaced;
# the busy one, frozen meanwhile, finishes its page once thawed.
# Both are frozen once both have said hello and one runs the page (its model
# loaded), which the debug log shows; the page's 5 s leave time to act.
OCRPOOL_NULL_OPTS=sleep_ms=5000 "$OCRPOOL" ocr "$DATA/phototest.tif" --engine null -j 2 --stats --log-level debug \
  >"$TMP/e.txt" 2>"$TMP/e.err" &
main=$!
both_ready_one_busy() {
  [ "$(grep -c 'is ready' "$TMP/e.err")" -ge 2 ] && grep -q 'loaded model' "$TMP/e.err"
}
check "both workers ready, one running the page" wait_for 60 both_ready_one_busy
stopped=$(pgrep -P "$main")
kill -STOP $stopped
wait_for 60 grep -q 'stopped answering heartbeats' "$TMP/e.err"
kill -CONT $(pgrep -P "$main") 2>/dev/null
wait "$main"
RC=$?
check "a silent idle worker is killed" grep -q 'stopped answering heartbeats' "$TMP/e.err"
check "the run still succeeds" test "$RC" -eq 0
check "and counts the restart" grep -q '"worker_restarts":[1-9]' "$TMP/e.err"

# 6. Workers that can never start (each exits before its hello, as one whose
# sandbox the kernel refuses would; OCRPOOL_TEST_WORKER_START_FAIL is the
# worker's own fault hook, since no real refusal can be arranged on every
# kernel): the command gives up after a few tries each, with exit 4 and a
# message, instead of waiting for them forever.
OCRPOOL_TEST_WORKER_START_FAIL=1 \
  timeout 120 "$OCRPOOL" ocr "$TMP/four.pdf" -j 2 -o "$TMP/f.txt" 2>"$TMP/f.err"
RC=$?
check "workers that cannot start: exit 4, not a wait" test "$RC" -eq 4
check "the message says no worker could start" grep -q 'no worker could start: each ended before it was ready, 5 times' "$TMP/f.err"
check "the worker's own reason is shown" grep -q 'cannot start: OCRPOOL_TEST_WORKER_START_FAIL' "$TMP/f.err"
check "no output file is written" test ! -e "$TMP/f.txt"

done_testing

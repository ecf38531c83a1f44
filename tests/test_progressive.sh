#!/usr/bin/env bash
# Acceptance 5: pages are decoded only when their job runs, so the peak memory
# of `ocrpool ocr` on a 200-page PDF is within a few MB of its 10-page prefix.
# Figures are the kernel's (VmHWM of the supervisor and of each worker, which
# --stats reports). The null engine keeps the run short: it still renders every
# page at 300 dpi; only the OCR is skipped.
source "$(dirname "$0")/lib.sh"

# Under ASan the peak is the sanitizer allocator's (it grows by a few MB over
# 400 pages while the real build stays flat), so the figure is taken from the
# release build, which `make check` tests too.
if [ "${OCRPOOL_SANITIZED:-0}" = 1 ]; then
  echo "skipped: memory figures under AddressSanitizer are not ocrpool's; the release build runs this test"
  exit 77
fi

args=()
for _ in $(seq 1 200); do args+=("$DATA/linn.pdf"); done
qpdf --empty --pages "${args[@]}" -- "$TMP/200.pdf"
qpdf --empty --pages "$TMP/200.pdf" 1-10 -- "$TMP/10.pdf"

stat_of() { grep -o "\"$1\":[0-9]*" "$2" | cut -d: -f2; }
run_ocr "$TMP/10.txt" "$TMP/10.err" "$TMP/10.pdf" --engine null -j 2 --stats
check "10 pages: exit 0" test "$RC" -eq 0
run_ocr "$TMP/200.txt" "$TMP/200.err" "$TMP/200.pdf" --engine null -j 2 --stats
check "200 pages: exit 0" test "$RC" -eq 0
check "200 pages: 200 pages done" test "$(stat_of pages "$TMP/200.err")" -eq 200
check "200 pages: 199 form feeds" test "$(tr -cd '\f' <"$TMP/200.txt" | wc -c)" -eq 199

sup10=$(stat_of supervisor_peak_rss_kb "$TMP/10.err")
sup200=$(stat_of supervisor_peak_rss_kb "$TMP/200.err")
wrk10=$(stat_of worker_peak_rss_kb "$TMP/10.err")
wrk200=$(stat_of worker_peak_rss_kb "$TMP/200.err")
echo "supervisor peak: 10 pages ${sup10} kB, 200 pages ${sup200} kB"
echo "worker peak:     10 pages ${wrk10} kB, 200 pages ${wrk200} kB"
# "A few MB": 4 MB for the supervisor, 8 MB for a worker (one rendered page is 8.4 MB).
check "supervisor peak grows by less than 4 MB from 10 to 200 pages" test $((sup200 - sup10)) -lt 4096
check "worker peak grows by less than 8 MB from 10 to 200 pages" test $((wrk200 - wrk10)) -lt 8192

done_testing

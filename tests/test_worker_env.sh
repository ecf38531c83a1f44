#!/usr/bin/env bash
# Acceptance 6: workers run with OMP_THREAD_LIMIT=1 unless the user set it. The
# null engine's test-only report_env mode writes the variable as the worker saw
# it into the json result.
source "$(dirname "$0")/lib.sh"

env_seen() { python3 -c "import json; print(json.load(open('$1'))['pages'][0]['env']['OMP_THREAD_LIMIT'])"; }

unset OMP_THREAD_LIMIT
OCRPOOL_NULL_OPTS=report_env=1 run_ocr "$TMP/a.json" "$TMP/a.err" "$DATA/phototest.tif" --engine null -f json
check "exit 0" test "$RC" -eq 0
check "unset by the user: workers see OMP_THREAD_LIMIT=1" test "$(env_seen "$TMP/a.json")" = 1

OMP_THREAD_LIMIT=2 OCRPOOL_NULL_OPTS=report_env=1 run_ocr "$TMP/b.json" "$TMP/b.err" "$DATA/phototest.tif" --engine null -f json
check "set by the user: workers keep OMP_THREAD_LIMIT=2" test "$(env_seen "$TMP/b.json")" = 2

done_testing

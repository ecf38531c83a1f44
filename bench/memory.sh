#!/usr/bin/env bash
# bench/memory.sh BUILD: part 3, memory, measured as ocrpool's admission counts
# it: the total PSS of a process tree (bench/pss.py, a sample every 20 ms).
#  a. 16 full-page scans submitted at once: ocrpool serve (defaults, and under
#     --workers 8 --memory-budget 300MB) against 16 concurrent tesseract
#     processes, one engine per task (the design ocrpool replaces);
#  b. idle: the server alone, and its return to that baseline after the last
#     task with keep_alive 2s and recycle.idle_exit 2s;
#  c. what recycle.isolate: per_task costs per task against a warm worker.
source "$(dirname "$0")/lib.sh"

make_flood
NFLOOD=${#FLOOD[@]}
BUDGET_MB=300
TOL_KB=$((3 * 1024)) # "back to baseline": within 3 MB of it
BACK_LIMIT=20        # seconds to wait for that
SEQ=${ISOLATE_TASKS:-8}

mb() { printf '%.0f' "$(calc "$1 / 1024")"; }

# ---- a. 16 tasks at once ----

flood_tesseract() {
  local out=$WORK/out go=$WORK/go t0 t1 launcher
  rm -rf "$out" "$go"
  mkdir -p "$out"
  (
    while [ ! -e "$go" ]; do sleep 0.005; done
    i=0
    for f in "${FLOOD[@]}"; do
      i=$((i + 1))
      tesseract "$f" "$out/$i" >/dev/null 2>&1 &
    done
    wait
    times >"$WORK/times" # their CPU time: the second line
  ) &
  launcher=$!
  start_sampler "$WORK/pss" "$launcher" --children-only
  t0=$(now)
  touch "$go"
  wait "$launcher"
  t1=$(now)
  stop_sampler "$WORK/pss"
  check_texts "$out" "$NFLOOD" "16 tesseract processes" >&2
  echo "time $(calc "$t1 - $t0")"
  echo "cpu $(cpu_of_times "$WORK/times")"
  echo "peak $("$PY" "$BENCH/pss.py" peak "$WORK/pss" | cut -d' ' -f1)"
}

# flood_ocrpool SERVE_ARGS...: a fresh server; a client submits the 16, waits
# for all and reads every result.
flood_ocrpool() {
  local t0 t1 c0 c1 waited
  rm -rf "$WORK/var" "$WORK/out"
  mkdir -p "$WORK/out"
  start_server "$WORK/var" "$@"
  start_sampler "$WORK/pss" "$SERVER_PID"
  c0=$(cpu_ms "$SERVER_PID")
  t0=$(now)
  "$PY" "$BENCH/http_load.py" pages "$BASE" "$WORK/out" format=txt "${FLOOD[@]}" >/dev/null
  t1=$(now)
  c1=$(cpu_ms "$SERVER_PID")
  stop_sampler "$WORK/pss"
  waited=$(curl -fs "$BASE/v1/memory" | "$PY" -c 'import json, sys
print(sum(d["pages_waited"] for d in json.load(sys.stdin)["devices"]))')
  stop_server
  check_texts "$WORK/out" "$NFLOOD" "ocrpool serve" >&2
  echo "time $(calc "$t1 - $t0")"
  echo "cpu $(calc "($c1 - $c0) / 1000")"
  read -r peak _ _ procs <<<"$("$PY" "$BENCH/pss.py" peak "$WORK/pss")"
  echo "peak $peak"
  echo "procs $((procs - 1))"
  echo "waited $waited"
  echo "series $("$PY" "$BENCH/pss.py" series "$WORK/pss" "$t0" 0.5 | tr ' ' ,)"
}

# ---- b. idle, and back to idle ----

cat >"$WORK/recycle.yaml" <<'YAML'
models:
  - name: eng
    engine: tesseract
    languages: eng
    keep_alive: 2s
    recycle:
      idle_exit: 2s
YAML
back_to_baseline() {
  local base last back=- t f
  rm -rf "$WORK/var" "$WORK/out"
  mkdir -p "$WORK/out"
  start_server "$WORK/var" --workers 2 --config "$WORK/recycle.yaml"
  sleep 1 # settled: no worker yet, workers start with the first task
  for f in Rss Pss; do
    echo "server_$f $(awk "/^$f:/ {print \$2}" "/proc/$SERVER_PID/smaps_rollup")"
  done
  start_sampler "$WORK/pss" "$SERVER_PID"
  t=$(now)
  sleep 1
  base=$("$PY" "$BENCH/pss.py" level "$WORK/pss" "$t" "$(now)")
  echo "base $base"
  # Two full-page scans at once: both workers start, load the model, OCR.
  read -r _ last <<<"$("$PY" "$BENCH/http_load.py" pages "$BASE" "$WORK/out" model=eng \
    "$DATA/8071_093.3B.tif" "$DATA/linn.png")"
  check_texts "$WORK/out" 2 "ocrpool serve" >&2
  for _ in $(seq 1 $((BACK_LIMIT * 5))); do
    sleep 0.2
    back=$("$PY" "$BENCH/pss.py" back "$WORK/pss" "$last" "$base" "$TOL_KB")
    # back, and has stayed so for a second
    if [ "$back" != - ] && [ "$(calc "$(now) - $last - $back > 1")" -eq 1 ]; then break; fi
    back=-
  done
  t=$(now)
  stop_sampler "$WORK/pss"
  stop_server
  echo "peak $("$PY" "$BENCH/pss.py" peak "$WORK/pss" | cut -d' ' -f1)"
  # where it settled: the last second sampled
  echo "settled $("$PY" "$BENCH/pss.py" level "$WORK/pss" "$(calc "$t - 1")" "$t")"
  [ "$back" = - ] || echo "back $back"
}

# ---- c. isolate: per_task against a warm worker ----

printf 'models:\n  - name: eng\n    engine: tesseract\n    languages: eng\n' >"$WORK/warm.yaml"
printf 'models:\n  - name: eng\n    engine: tesseract\n    languages: eng\n    recycle:\n      isolate: per_task\n' \
  >"$WORK/isolate.yaml"
# per_task CONFIG: one task to warm up, then $SEQ 1-page tasks one after
# another (phototest.tif, 0.3 s of OCR: the fixed costs show).
per_task() {
  local c0 c1 lat
  rm -rf "$WORK/var"
  start_server "$WORK/var" --workers 2 --config "$1"
  "$PY" "$BENCH/http_load.py" seq "$BASE" "$DATA/phototest.tif" 1 model=eng >/dev/null
  sleep 0.3 # an isolated worker has exited and been reaped
  start_sampler "$WORK/pss" "$SERVER_PID"
  c0=$(cpu_ms "$SERVER_PID")
  lat=$("$PY" "$BENCH/http_load.py" seq "$BASE" "$DATA/phototest.tif" "$SEQ" model=eng)
  sleep 0.3
  c1=$(cpu_ms "$SERVER_PID")
  stop_sampler "$WORK/pss"
  echo "lat $lat"
  echo "cpu $(calc "($c1 - $c0) / $SEQ")"
  echo "peak $("$PY" "$BENCH/pss.py" peak "$WORK/pss" | cut -d' ' -f1)"
  echo "after $(tail -1 "$WORK/pss" | cut -d' ' -f2)"
  # every task done by its own worker (isolate) or all by warm ones
  echo "pids $(curl -fs "$BASE/v1/tasks?limit=100" | "$PY" -c 'import json, sys, urllib.request
base = sys.argv[1]
pids = set()
for t in json.load(sys.stdin)["tasks"]:
    assert t["status"] == "succeeded", t
    ev = json.load(urllib.request.urlopen(base + "/v1/tasks/" + t["id"] + "/events"))["events"]
    pids |= {e["details"]["pid"] for e in ev if e["type"] == "page_started"}
print(len(pids))' "$BASE")"
  stop_server
}

for r in $(seq 1 "$RUNS"); do
  log "memory round $r of $RUNS"
  quiet
  record tess flood_tesseract
  record pool flood_ocrpool
  record flood flood_ocrpool --workers 8 --memory-budget "${BUDGET_MB}MB"
  record idle back_to_baseline
  record warm per_task "$WORK/warm.yaml"
  record iso per_task "$WORK/isolate.yaml"
done

# ---- tables ----

echo "### 3a. Memory: $NFLOOD full-page scans submitted at once"
echo
echo "8071_093.3B.tif, linn.png, c02-22 and skew (rendered at 300 dpi grey), four times each. Peak: the"
echo "largest total PSS of the process tree (the server and its workers, or the 16 tesseract processes),"
echo "sampled every 20 ms. Completion: first submission to last result read. CPU: of the server and its"
echo "workers, or of the 16 processes. $RUNS runs each; ratio: the contender's over the reference's (below 1"
echo "is less memory, time or CPU)."
echo
echo "| contender | median peak MB | min-max MB | ratio to reference | median completion s | min-max s | ratio to reference | CPU s | min-max | ratio |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
# over KEY REF: KEY's median over REF's ("-" when either is missing)
over() {
  if has "$1" && has "$2"; then printf '%.3f' "$(calc "$(med "$1") / $(med "$2")")"; else echo -; fi
}
mrow() {
  echo "| $2 | $(cells "$1.peak" %.0f 1024) | $(over "$1.peak" tess.peak) | $(cells "$1.time" %.2f) |" \
    "$(over "$1.time" tess.time) | $(cells "$1.cpu" %.1f) | $(over "$1.cpu" tess.cpu) |"
}
mrow tess "$NFLOOD concurrent \`tesseract\` processes, one engine each (reference)"
mrow pool "\`ocrpool serve\`, defaults ($JOBS workers, budget 80 % of memory)"
mrow flood "\`ocrpool serve --workers 8 --memory-budget ${BUDGET_MB}MB\`"
echo
if has flood.peak; then
  # The run with the median peak: its total PSS every 0.5 s, as a sparkline
  # whose full block is the budget, and in MB.
  peaks=(${VAL[flood.peak]})
  series=(${VAL[flood.series]})
  want=$(med flood.peak)
  pick=0
  for i in "${!peaks[@]}"; do
    if [ "$(calc "${peaks[$i]} == $want")" -eq 1 ]; then pick=$i; fi
  done
  echo "Under the ${BUDGET_MB} MB budget: peak $(mb "$want") MB ($(printf '%.0f' "$(calc "100 * $want / 1024 / $BUDGET_MB")") % of the budget);"
  echo "at most $(med flood.procs) workers at once; $(med flood.waited) pages waited for memory (median run)."
  echo "Total PSS every 0.5 s from the first submission (the median run), 10 s a line; a full block is"
  echo "the budget:"
  echo
  echo '```'
  echo "${series[$pick]}" | tr , '\n' | awk -v b="$BUDGET_MB" '
    BEGIN {split("▁ ▂ ▃ ▄ ▅ ▆ ▇ █", s, " ")}
    {i = int($1 / b * 8 + 0.5); i = i < 1 ? 1 : i > 8 ? 8 : i; spark = spark s[i]; mbs = mbs sprintf(" %3d", $1); n++}
    function out() {printf "%3d s %s%" (21 - n) "s MB%s\n", t, spark, "", mbs; t += 10; spark = mbs = ""; n = 0}
    n == 20 {out()}
    END {if (n) out()}'
  echo '```'
  echo
fi

echo "### 3b. Memory: idle, and back to idle"
echo
echo "A server with \`--workers 2\` and the model \`eng\` under \`keep_alive: 2s\` and \`recycle: idle_exit: 2s\`;"
echo "two full-page scans at once (8071_093.3B.tif, linn.png); then the time from the last task's end until"
echo "the total PSS is within $((TOL_KB / 1024)) MB of the idle baseline and stays there. $RUNS runs."
echo
echo "| figure | median | min-max |"
echo "| --- | ---: | ---: |"
echo "| server RSS, idle (no worker yet), MB | $(cells idle.server_Rss %.1f 1024) |"
echo "| server PSS, idle, MB | $(cells idle.server_Pss %.1f 1024) |"
echo "| total PSS, idle (sampled for 1 s): the baseline, MB | $(cells idle.base %.1f 1024) |"
echo "| total PSS, peak during the two tasks, MB | $(cells idle.peak %.0f 1024) |"
echo "| total PSS where it settled, MB | $(cells idle.settled %.1f 1024) |"
if [ "$(printf '%s\n' ${VAL[idle.back]:-} | grep -c .)" -eq "$RUNS" ]; then
  echo "| seconds from the last task's end to the baseline | $(cells idle.back %.2f) |"
else
  echo "| seconds from the last task's end to the baseline | not back within ${BACK_LIMIT} s in $((RUNS - $(printf '%s\n' ${VAL[idle.back]:-} | grep -c .))) of $RUNS runs | - |"
fi
echo "| total PSS, idle with warm workers (after 3c's warm run), MB | $(cells warm.after %.1f 1024) |"
echo

echo "### 3c. \`recycle.isolate: per_task\` against a warm worker"
echo
echo "$SEQ tasks one after another (phototest.tif, 640x480), after one to warm up; \`--workers 2\`."
echo "Latency: submit to result, median of the $SEQ; CPU: the server's and its workers' (exited ones"
echo "included) per task. $RUNS runs each; ratio: the contender's over the reference's."
echo
echo "| contender | median ms per task | min-max | ratio | CPU ms per task | min-max | ratio | peak total PSS MB | min-max | workers used |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
irow() {
  echo "| $2 | $(cells "$1.lat" %.0f) | $(ratio warm.lat "$1.lat" down) | $(cells "$1.cpu" %.0f) |" \
    "$(ratio warm.cpu "$1.cpu" down) | $(cells "$1.peak" %.0f 1024) | $(med "$1.pids") |"
}
irow warm "model \`eng\`, warm worker (reference)"
irow iso "model \`eng\` with \`isolate: per_task\` (a fresh worker per task)"
echo
if has iso.lat && has warm.lat; then
  printf 'Extra cost of isolate: per_task: %.0f ms of latency and %.0f ms of CPU per task.\n' \
    "$(calc "$(med iso.lat) - $(med warm.lat)")" "$(calc "$(med iso.cpu) - $(med warm.cpu)")"
  echo
fi

echo "Goals:"
echo
goal "3a. ocrpool's peak memory against 16 tesseract processes (defaults)" "$(over pool.peak tess.peak)" "<=" 0.25
goal "3a. ... at equal or better completion time (time ratio)" "$(over pool.time tess.time)" "<=" 1.0
r=-
has flood.peak && r=$(printf '%.3f' "$(calc "$(med flood.peak) / 1024 / $BUDGET_MB")")
goal "3a. the flood's peak within its ${BUDGET_MB} MB budget (share of it)" "$r" "<=" 1.0
echo

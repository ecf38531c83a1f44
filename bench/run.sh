#!/usr/bin/env bash
# bench/run.sh BUILD_DIR: OCR throughput of ocrpool against its peers, on the
# same pages in one run (see bench/README.md). Prints a table and writes it to
# docs/benchmarks.md. Each contender runs RUNS times (default 3); the table has
# the median, min-max and the ratio to the reference (the plain API loop).
set -euo pipefail
BUILD=${1:-build}
RUNS=${RUNS:-3}
CORES=$(getconf _NPROCESSORS_ONLN) # not nproc: it honours OMP_THREAD_LIMIT, set below
JOBS=${JOBS:-$CORES}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OCRPOOL=$ROOT/$BUILD/ocrpool
API_LOOP=$ROOT/$BUILD/bench_api_loop
DATA=$ROOT/tests/data
WORK=$(mktemp -d /tmp/ocrpool-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export OMP_THREAD_LIMIT=1

# The pages: real full-page scans from tests/data, PDF pages pre-rendered at
# 300 dpi gray (as ocrpool renders them), so every contender reads the same images.
mkdir -p "$WORK/pages"
cp "$DATA/8071_093.3B.tif" "$DATA/linn.png" "$DATA/eurotext.tif" "$DATA/phototest.tif" "$DATA/baiona.png" "$WORK/pages/"
pdftoppm -r 300 -gray -png "$DATA/c02-22.pdf" "$WORK/pages/c02-22"
pdftoppm -r 300 -gray -png "$DATA/skew.pdf" "$WORK/pages/skew"
pdftoppm -r 300 -gray -png "$DATA/linn.pdf" "$WORK/pages/linnpdf"
# Twice over (16 pages), so the tail of the last pages weighs less.
for f in "$WORK"/pages/*; do cp "$f" "$(dirname "$f")/again-$(basename "$f")"; done
PAGES=("$WORK"/pages/*)
NPAGES=${#PAGES[@]}

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# check_texts DIR: every page produced a text with words in it.
check_texts() {
  local n
  n=$(find "$1" -type f -size +20c | wc -l)
  if [ "$n" -ne "$NPAGES" ]; then
    echo "bench: $2 produced $n texts for $NPAGES pages: not counted" >&2
    return 1
  fi
}

contender_api() {
  rm -rf "$WORK/out" && mkdir -p "$WORK/out"
  "$API_LOOP" -j "$JOBS" -o "$WORK/out" "${PAGES[@]}"
  check_texts "$WORK/out" "the API loop"
}
contender_ocrpool() {
  rm -rf "$WORK/out" && mkdir -p "$WORK/out"
  "$OCRPOOL" ocr -q -j "$JOBS" -o "$WORK/out" -f txt "${PAGES[@]}"
  check_texts "$WORK/out" "ocrpool"
}
contender_cli() {
  rm -rf "$WORK/out" && mkdir -p "$WORK/out"
  printf '%s\n' "${PAGES[@]}" |
    xargs -P "$JOBS" -I{} sh -c 'tesseract "$1" "$2/$(basename "$1")" >/dev/null 2>&1' _ {} "$WORK/out"
  check_texts "$WORK/out" "the tesseract CLI"
}

# ocrpool serve through HTTP: a client submits every page, waits for all.
start_server() {
  rm -rf "$WORK/var" "$WORK/port"
  "$OCRPOOL" serve --listen 127.0.0.1:0 --port-file "$WORK/port" --data-dir "$WORK/var" --workers "$JOBS" \
    --log-level warn 2>"$WORK/server.log" &
  SERVER_PID=$!
  for _ in $(seq 1 100); do [ -s "$WORK/port" ] && break; sleep 0.1; done
  BASE="http://127.0.0.1:$(cat "$WORK/port")"
}
stop_server() { kill -TERM "$SERVER_PID"; wait "$SERVER_PID"; }
contender_http() {
  rm -rf "$WORK/out" && mkdir -p "$WORK/out"
  python3 "$ROOT/bench/http_load.py" pages "$BASE" "$WORK/out" "${PAGES[@]}" >/dev/null
  check_texts "$WORK/out" "ocrpool serve"
}

declare -A MED MIN MAX
measure() { # NAME FUNCTION
  local times=() t0 t1
  for _ in $(seq 1 "$RUNS"); do
    t0=$(now)
    "$2"
    t1=$(now)
    times+=("$(echo "$t1 - $t0" | bc -l)")
  done
  MED[$1]=$(printf '%s\n' "${times[@]}" | median)
  MIN[$1]=$(printf '%s\n' "${times[@]}" | sort -g | head -1)
  MAX[$1]=$(printf '%s\n' "${times[@]}" | sort -g | tail -1)
  echo "bench: $1: ${times[*]} s" >&2
}

measure api contender_api
measure ocrpool contender_ocrpool
measure cli contender_cli
start_server
measure http contender_http
# Framework overhead: the null engine, 1-page tasks (crom.png, 400x50).
NULL_FIGURES=$(python3 "$ROOT/bench/http_load.py" null "$BASE" "$DATA/crom.png" 400 20)
stop_server
read -r NULL_TPS NULL_P50 NULL_P99 <<<"$NULL_FIGURES"

cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
mem=$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)
table() {
  echo "OCR throughput: $NPAGES page images, $JOBS workers, $RUNS runs each (median, min-max)"
  echo
  echo "| contender | median s | min-max s | pages/s | ratio to reference (pages/s) |"
  echo "| --- | ---: | ---: | ---: | ---: |"
  for k in api ocrpool http cli; do
    case $k in
      api) name="plain Tesseract C API loop, $JOBS processes, model loaded once (reference)" ;;
      ocrpool) name="ocrpool ocr -j $JOBS" ;;
      http) name="ocrpool serve --workers $JOBS through HTTP (submit all, wait for all)" ;;
      cli) name="tesseract CLI once per page, $JOBS at a time" ;;
    esac
    printf '| %s | %.2f | %.2f-%.2f | %.3f | %.3f |\n' "$name" "${MED[$k]}" "${MIN[$k]}" "${MAX[$k]}" \
      "$(echo "$NPAGES / ${MED[$k]}" | bc -l)" "$(echo "${MED[api]} / ${MED[$k]}" | bc -l)"
  done
  echo
  printf 'HTTP against ocrpool ocr on the same pages: %.3f (goal: within 3 %%)\n' "$(echo "${MED[ocrpool]} / ${MED[http]}" | bc -l)"
  echo
  echo "Framework overhead, null engine, 1-page tasks through HTTP + SQLite, $JOBS workers:"
  echo
  echo "| figure | value |"
  echo "| --- | ---: |"
  echo "| tasks/s, 8 closed-loop clients | $NULL_TPS |"
  echo "| submit-to-result p50 at 20 tasks/s offered | $NULL_P50 ms |"
  echo "| submit-to-result p99 at 20 tasks/s offered | $NULL_P99 ms |"
}
table
{
  echo "# Benchmarks"
  echo
  echo "Measured by \`make bench\` on $(date -u +%Y-%m-%d): $cpu, $CORES cores, $mem;"
  echo "$(tesseract --version 2>&1 | head -1), Debian's eng model, OMP_THREAD_LIMIT=1 everywhere."
  echo
  table
} >"$ROOT/docs/benchmarks.md"
echo "wrote docs/benchmarks.md" >&2

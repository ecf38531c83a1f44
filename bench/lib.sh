#!/usr/bin/env bash
# bench/lib.sh: sourced by every part of the bench (see bench/README.md).
# Paths, the bench data made from tests/data, timing that records failures
# instead of fast times, servers and samplers that are always stopped, and the
# table cells (median, min-max, ratio to the reference row).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
DATA=$ROOT/tests/data
# The build directory: absolute, or relative to the repository root.
BUILD=${1:-build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
OCRPOOL=$BUILD/ocrpool
API_LOOP=$BUILD/bench_api_loop
RUNS=${RUNS:-3}
CORES=$(getconf _NPROCESSORS_ONLN) # not nproc: it honours OMP_THREAD_LIMIT, set below
JOBS=${JOBS:-$CORES}
# Debian's interpreter: python3-rq is installed for it, not for a python3 that
# a pyenv or venv may put earlier on PATH.
PY=${PY:-/usr/bin/python3}
# One thread per Tesseract, everywhere: every contender runs one process per core.
export OMP_THREAD_LIMIT=1

log() { echo "bench: $*" >&2; }
die() {
  log "$*"
  exit 1
}
[ -x "$OCRPOOL" ] || die "no $OCRPOOL: build first (cmake --build $BUILD --target ocrpool bench_api_loop)"

WORK=$(mktemp -d /tmp/ocrpool-bench.XXXXXX)
BG_PIDS=()   # everything started in the background, stopped at exit whatever happens
MORE_DIRS=() # scratch directories outside $WORK (tmpfs), removed at exit
SERVER_PID=
cleanup() {
  local p
  for p in ${SERVER_PID:-} "${BG_PIDS[@]}"; do
    kill -TERM "$p" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  if [ -n "${KEEP_WORK:-}" ]; then log "kept $WORK"; else rm -rf "$WORK" "${MORE_DIRS[@]}"; fi
}
trap cleanup EXIT

now() { date +%s.%N; }

# quiet: this machine may be shared; before a round, wait (up to QUIET_MAX
# seconds, default 10) until others leave the cores mostly idle, so they
# weigh less on the figures (a server of ours may be up then, idle).
quiet() {
  local a b busy waited=0
  while :; do
    a=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8}' /proc/stat)
    sleep 1
    b=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8}' /proc/stat)
    busy=$(echo "$a $b" | awk '{d = $4 - $2; print (d > 0 ? int(100 * ($3 - $1) / d) : 0)}')
    [ "$waited" -gt 0 ] || [ -z "${BENCH_BUSY:-}" ] || echo "$busy" >>"$BENCH_BUSY" # for the report
    [ "$busy" -le 15 ] && break
    waited=$((waited + 1))
    if [ "$waited" -ge "${QUIET_MAX:-10}" ]; then
      log "the cores are still $busy % busy with other work: going on (figures will be noisier)"
      break
    fi
    [ "$waited" -eq 1 ] && log "the cores are $busy % busy with other work: waiting for them to calm down"
  done
}
calc() { echo "$*" | bc -l; }

# ---- bench data: real scans from tests/data only ----

# render PDF PAGE PNG: one page at 300 dpi grey, as ocrpool renders it.
render() { mutool draw -q -r 300 -c gray -o "$3" "$1" "$2" 2>/dev/null; }

# The multi-page PDF: the corpus's full-page scans, each twice (8 pages):
# 8071_093.3B (3312x2550 bilevel magazine page, wrapped losslessly by img2pdf),
# linn (2550x3300 JBIG2), c02-22 (800x981 JPEG at 150 dpi), skew (linn
# skewed by the page matrix). $PDF_PAGES are its pages pre-rendered at 300 dpi
# grey by MuPDF's mutool, the renderer ocrpool links (so the same pixels), for
# the contenders that cannot read a PDF.
make_pdf() {
  mkdir -p "$WORK/pdfsrc" "$WORK/rendered"
  img2pdf "$DATA/8071_093.3B.tif" -o "$WORK/pdfsrc/8071.pdf"
  local one=("$WORK/pdfsrc/8071.pdf" "$DATA/linn.pdf" "$DATA/c02-22.pdf" "$DATA/skew.pdf")
  qpdf --empty --pages "${one[@]}" "${one[@]}" -- "$WORK/scans.pdf"
  PDF=$WORK/scans.pdf
  NPDF=$(qpdf --show-npages "$PDF")
  local i
  for i in $(seq 1 "$NPDF"); do render "$PDF" "$i" "$WORK/rendered/page-$i.png"; done
  PDF_PAGES=("$WORK"/rendered/*.png)
  [ "${#PDF_PAGES[@]}" -eq "$NPDF" ] || die "rendered ${#PDF_PAGES[@]} of $NPDF pages"
}

# The directory of page images: the corpus's images as they are (TIFF G4,
# 1-bit and RGB PNG, some small) and its scanned PDFs rendered at 300 dpi grey.
make_images() {
  mkdir -p "$WORK/images"
  cp "$DATA/8071_093.3B.tif" "$DATA/linn.png" "$DATA/eurotext.tif" "$DATA/phototest.tif" \
    "$DATA/baiona.png" "$WORK/images/"
  local f
  for f in c02-22 skew linn; do
    render "$DATA/$f.pdf" 1 "$WORK/images/$f-pdf.png"
  done
  IMAGES=("$WORK"/images/*)
  NIMAGES=${#IMAGES[@]}
}

# 16 full-page scans for the memory part: four pages, four times each.
make_flood() {
  mkdir -p "$WORK/flood"
  render "$DATA/c02-22.pdf" 1 "$WORK/flood/c02-22.png"
  render "$DATA/skew.pdf" 1 "$WORK/flood/skew.png"
  FLOOD=()
  local i
  for i in 1 2 3 4; do
    FLOOD+=("$DATA/8071_093.3B.tif" "$DATA/linn.png" "$WORK/flood/c02-22.png" "$WORK/flood/skew.png")
  done
}

# ---- checks: a contender that did not do the work fails, it is not fast ----

MIN_WORDS=5 # the smallest corpus page (baiona.png) has 18 words

# check_texts DIR N WHO: N text files in DIR, each with words.
check_texts() {
  local n=0 f
  for f in "$1"/*; do
    [ -f "$f" ] || continue
    if [ "$(wc -w <"$f")" -lt "$MIN_WORDS" ]; then
      log "$3: $(basename "$f") has no text"
      return 1
    fi
    n=$((n + 1))
  done
  [ "$n" -eq "$2" ] || {
    log "$3: $n texts for $2 pages"
    return 1
  }
}

# check_pages TEXT N WHO: a text of N pages separated by form feeds (Tesseract's
# and pdftotext's page end), each with words.
check_pages() {
  "$PY" - "$1" "$2" "$3" "$MIN_WORDS" <<'PY'
import sys
text, n, who, least = open(sys.argv[1], encoding="utf-8", errors="replace").read(), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
pages = text.split("\f")
if pages and not pages[-1].strip():
    pages.pop()
words = [len(p.split()) for p in pages]
if len(pages) != n or min(words, default=0) < least:
    sys.exit("bench: %s: %d pages (%d wanted), words per page %s" % (who, len(pages), n, words))
PY
}

# check_pdf PDF N WHO: a searchable PDF of N pages, with words on each.
check_pdf() {
  local n
  n=$(qpdf --show-npages "$1" 2>/dev/null) || {
    log "$3: no readable PDF"
    return 1
  }
  [ "$n" -eq "$2" ] || {
    log "$3: $n pages for $2"
    return 1
  }
  pdftotext -enc UTF-8 "$1" "$1.txt" && check_pages "$1.txt" "$2" "$3"
}

# ---- measurements ----

declare -A VAL  # KEY -> the samples, space-separated
declare -A FAIL # KEY -> how many runs failed
add() { VAL[$1]="${VAL[$1]:-} $2"; }

# attempt FUNCTION ARGS...: runs it in a subshell with errexit really on
# (errexit is off inside a function called from `if` or `||`); returns its
# status. A server or sampler it started (not one already running) is stopped
# however it ends.
attempt() {
  local rc
  set +e
  (
    set -e
    outer_server=${SERVER_PID:-} outer_sampler=${SAMPLER_PID:-}
    trap '[ "${SERVER_PID:-}" = "$outer_server" ] || stop_server
      [ "${SAMPLER_PID:-}" = "$outer_sampler" ] || kill -TERM "$SAMPLER_PID" 2>/dev/null || true' EXIT
    "$@"
    # With CPU_OUT set: the CPU seconds of everything it ran (bash's `times`,
    # second line: its children's user and system time).
    if [ -n "${CPU_OUT:-}" ]; then
      times >"$CPU_OUT.times" # not in a pipeline: that would be another process's
      cpu_of_times "$CPU_OUT.times" >"$CPU_OUT"
    fi
  )
  rc=$?
  set -e
  return $rc
}

# cpu_of_times FILE: the seconds in the second line of bash's `times` output
# ("0m12.345s 0m0.678s": the children's user and system time).
cpu_of_times() {
  awk 'NR == 2 {for (i = 1; i <= 2; i++) {split($i, a, "m"); t += a[1] * 60 + a[2]}; print t + 0}' "$1"
}

# record KEY FUNCTION ARGS...: one run of a function that prints "FIELD VALUE"
# lines on stdout; each becomes a sample of KEY.FIELD, or the run a failure.
record() {
  local key=$1 out rc=0 f v
  shift
  out=$(attempt "$@") || rc=$?
  if [ "$rc" -ne 0 ]; then
    FAIL[$key]=$((${FAIL[$key]:-0} + 1))
    log "$key: FAILED (status $rc), not counted"
    return 0
  fi
  while read -r f v; do
    [ -z "$f" ] || add "$key.$f" "$v"
  done <<<"$out"
  log "$key: $(echo $out)"
}

# timed KEY FUNCTION ARGS...: one run; records its seconds as KEY and the CPU
# seconds of all its processes as KEY.cpu (plus what it wrote to $WORK/cpu.more,
# for a server it does not run itself), or a failure. On a shared machine the
# CPU time is the steadier of the two.
timed() {
  local key=$1 t0 t1 rc=0 cpu
  shift
  rm -f "$WORK/cpu" "$WORK/cpu.more"
  t0=$(now)
  CPU_OUT=$WORK/cpu attempt "$@" || rc=$?
  t1=$(now)
  if [ "$rc" -eq 0 ]; then
    cpu=$(cat "$WORK/cpu")
    [ ! -s "$WORK/cpu.more" ] || cpu=$(calc "$cpu + $(cat "$WORK/cpu.more")")
    add "$key" "$(calc "$t1 - $t0")"
    add "$key.cpu" "$cpu"
    log "$key: $(printf '%.2f s, CPU %.2f s' "$(calc "$t1 - $t0")" "$cpu")"
  else
    FAIL[$key]=$((${FAIL[$key]:-0} + 1))
    log "$key: FAILED (status $rc), not counted"
  fi
}

# stats KEY: "median min max" of its samples (empty when none).
stats() {
  [ -n "${VAL[$1]:-}" ] || return 0
  printf '%s\n' ${VAL[$1]} | sort -g |
    awk '{a[NR] = $1} END {print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2), a[1], a[NR]}'
}
med() {
  local s
  s=$(stats "$1")
  echo "${s%% *}"
}
# has KEY: samples and no failed run (of KEY, or of its contender: KEY's prefix).
has() { [ -n "${VAL[$1]:-}" ] && [ "${FAIL[$1]:-0}" -eq 0 ] && [ "${FAIL[${1%.*}]:-0}" -eq 0 ]; }

# cells KEY FORMAT [DIVISOR]: the "median | min-max" cells, or FAILED.
cells() {
  local fmt=$2 div=${3:-1} m lo hi
  if ! has "$1"; then
    printf 'FAILED (%s of %s runs) | -' "$((${FAIL[$1]:-0} + ${FAIL[${1%.*}]:-0}))" "$RUNS"
    return
  fi
  read -r m lo hi <<<"$(stats "$1")"
  printf "$fmt | $fmt-$fmt" "$(calc "$m / $div")" "$(calc "$lo / $div")" "$(calc "$hi / $div")"
}

# ratio KEY REF up|down: how the contender's median compares with the
# reference's; "up" where more is better (rates: KEY/REF), "down" where less
# is better (seconds: REF/KEY), so above 1 is always better than the reference.
ratio() {
  has "$1" && has "$2" || {
    echo "-"
    return
  }
  local num=$1 den=$2
  [ "$3" = up ] || num=$2 den=$1
  if [ "$(calc "$(med "$den") > 0")" -eq 1 ]; then
    printf '%.3f' "$(calc "$(med "$num") / $(med "$den")")"
  else
    echo "-"
  fi
}

# goal WHAT VALUE OP TARGET [NOTE]: one line of the closing note, also
# collected by bench/run.sh through $BENCH_GOALS.
goal() {
  local verdict="NOT met"
  if [ "$2" != "-" ] && [ "$(calc "$2 $3 $4")" -eq 1 ]; then verdict=met; fi
  local line="- $1: $2 (goal $3 $4): **$verdict**${5:+; $5}"
  echo "$line"
  if [ -n "${BENCH_GOALS:-}" ]; then echo "$line" >>"$BENCH_GOALS"; fi
}

# ---- ocrpool serve ----

# start_server DATA_DIR ARGS...: on a free loopback port; sets SERVER_PID and BASE.
start_server() {
  local dir=$1
  shift
  rm -f "$WORK/port"
  "$OCRPOOL" serve --listen 127.0.0.1:0 --port-file "$WORK/port" --data-dir "$dir" "$@" 2>>"$WORK/server.log" &
  SERVER_PID=$!
  local _
  for _ in $(seq 1 200); do
    if [ -s "$WORK/port" ]; then
      BASE=http://127.0.0.1:$(cat "$WORK/port")
      curl -fs "$BASE/healthz" >/dev/null && return 0
    fi
    sleep 0.05
  done
  tail -20 "$WORK/server.log" >&2
  die "ocrpool serve did not start"
}
stop_server() {
  [ -n "${SERVER_PID:-}" ] || return 0
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
}

# ---- memory: the PSS of a process tree, every 20 ms (bench/pss.py) ----

# start_sampler OUT PID [--children-only]: sets SAMPLER_PID; stop_sampler OUT ends it.
start_sampler() {
  rm -f "$1" "$1.stop"
  "$PY" "$BENCH/pss.py" sample "$@" &
  SAMPLER_PID=$!
  BG_PIDS+=("$SAMPLER_PID")
  while [ ! -e "$1" ]; do # until it has taken its first sample
    kill -0 "$SAMPLER_PID" 2>/dev/null || die "the PSS sampler failed"
    sleep 0.01
  done
}
stop_sampler() {
  touch "$1.stop"
  wait "$SAMPLER_PID" || true
  SAMPLER_PID=
}

# ---- CPU time ----

TICK_MS=$((1000 / $(getconf CLK_TCK)))
# cpu_ms PID...: CPU time (ms) these processes used, with their live children
# and the children they have reaped (a worker that exited still counts).
cpu_ms() {
  local t=0 p k
  for p in "$@"; do
    # after "PID (COMM) ": utime stime cutime cstime are fields 12-15
    t=$((t + $(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{t = $12 + $13 + $14 + $15} END {print t + 0}')))
    for k in $(pgrep -P "$p" || true); do
      t=$((t + $(sed 's/.*) //' "/proc/$k/stat" 2>/dev/null | awk '{t = $12 + $13} END {print t + 0}')))
    done
  done
  echo $((t * TICK_MS))
}

# http_pdf: the bench PDF as one task through the server at $BASE (the
# caller's fresh() empties $WORK/out); the server's CPU goes to cpu.more, as
# it is not the function's child.
http_pdf() {
  local c0
  fresh
  c0=$(cpu_ms "$SERVER_PID")
  "$PY" "$BENCH/http_load.py" pages "$BASE" "$WORK/out" format=txt "$PDF" >/dev/null
  calc "($(cpu_ms "$SERVER_PID") - $c0) / 1000" >"$WORK/cpu.more"
  check_pages "$WORK/out"/*.txt "$NPDF" "ocrpool serve"
}

# ---- the machine and the peers, for the report's header ----
machine() {
  local cpu mem
  cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
  mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
  echo "$CORES cores ($cpu), $mem of memory, Linux $(uname -r)"
}

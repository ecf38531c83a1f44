#!/usr/bin/env bash
# tests/fuzz/run.sh BUILD_DIR SECONDS: runs each libFuzzer target of BUILD_DIR
# (make fuzz-build) for SECONDS, after replaying every reproducer kept under
# tests/fuzz/regressions/TARGET/. Corpora live in BUILD_DIR/corpus/TARGET,
# seeded each run from tests/data and the seeds below, and grow from run to
# run. A crash, a leak, a timeout (10 s an input) or an input past 2 GB fails
# the run; its reproducer is written to BUILD_DIR/crashes/ and the line to
# keep it as a regression is printed. Prints the executions of each target.
set -u
BUILD=${1:?usage: $0 BUILD_DIR SECONDS}
SECONDS_EACH=${2:?usage: $0 BUILD_DIR SECONDS}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(cd "$BUILD" && pwd)
# The targets' input files go to a directory removed at the end (tmpfs if there is one).
WORK=$(mktemp -d "$( [ -d /dev/shm ] && [ -w /dev/shm ] && echo /dev/shm || echo /tmp)/ocrpool-fuzz.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export TMPDIR=$WORK
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
mkdir -p "$BUILD/crashes"

# seed TARGET DIR: the seeds of TARGET into DIR.
seed() {
  local dir=$2 f
  case $1 in
  fuzz_probe) # every document of tests/data within -max_len (1 MB): each type, good and bad
    for f in "$ROOT"/tests/data/*; do
      [ -f "$f" ] && [ "$(stat -c %s "$f")" -le 1048576 ] && cp "$f" "$dir/"
    done ;;
  fuzz_config)
    cp "$ROOT/ocrpool.example.yaml" "$dir/example.yaml"
    printf 'server:\n  workers: 2\ndevices:\n  cpu:\n    budget: 60%%\n' >"$dir/small.yaml"
    printf 'models:\n  - name: fast\n    engine: tesseract\n    lang: eng\n    memory_limit: 1GB\n    recycle: {max_tasks: 10}\n' \
      >"$dir/models.yaml" ;;
  fuzz_options)
    printf 'format=txt,hocr,json\nlang=eng+deu\npsm=6\npages=1-3,5\npriority=3\n' >"$dir/query"
    printf 'engine=null\nformat=pdf\n' >"$dir/null-pdf"
    printf '{"format":["txt"],"lang":"eng","psm":4,"pages":"2-","rotate_pages":true}' >"$dir/stored.json" ;;
  fuzz_protocol) # the first byte is the piece size, then frames as workers send them
    python3 - "$dir" <<'EOF'
import json, struct, sys
frames = [{"op": "hello", "pid": 42, "protocol": 1, "version": "0.1.0", "device": "cpu", "id": 0},
          {"op": "done", "page": 1, "rss_kb": 20480, "peak_rss_kb": 40960, "ocr_ms": 812.5, "width": 2480},
          {"op": "failed", "code": -5, "reason": "bad_input", "message": "page 2: cannot decode"}]
body = b''.join(struct.pack('>I', len(j)) + j for j in (json.dumps(f).encode() for f in frames))
open(sys.argv[1] + '/three-frames', 'wb').write(b'\x07' + body)
open(sys.argv[1] + '/cut-frame', 'wb').write(b'\x01' + body[:-5])
EOF
    ;;
  esac
}

status=0
summary=""
for target in "$BUILD"/fuzz_*; do
  [ -x "$target" ] || continue
  name=$(basename "$target")
  corpus=$BUILD/corpus/$name
  mkdir -p "$corpus" "$WORK/seeds-$name"
  seed "$name" "$WORK/seeds-$name"
  regressions=("$ROOT"/tests/fuzz/regressions/"$name"/*)
  if [ -e "${regressions[0]}" ]; then
    if ! "$target" -runs=1 "${regressions[@]}" >"$WORK/$name.replay" 2>&1; then
      echo "FAIL: $name: a kept reproducer fails again"
      tail -40 "$WORK/$name.replay"
      status=1
      continue
    fi
  fi
  # Pages and files are large: inputs up to 1 MB; an input may take 10 s and 2 GB.
  "$target" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -max_len=1048576 \
    -artifact_prefix="$BUILD/crashes/$name-" -print_final_stats=1 "$corpus" "$WORK/seeds-$name" \
    >"$WORK/$name.log" 2>&1
  rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$WORK/$name.log" | tail -1)
  summary+=$(printf '%-14s %10s executions in %s s, corpus %s inputs' "$name" "${runs:-?}" "$SECONDS_EACH" \
    "$(find "$corpus" -type f | wc -l)")$'\n'
  if [ "$rc" -ne 0 ]; then
    echo "FAIL: $name (exit $rc)"
    grep -m1 -A30 'ERROR: \|runtime error\|deadly signal\|timeout after' "$WORK/$name.log" || tail -40 "$WORK/$name.log"
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$WORK/$name.log" | tail -1)
    [ -z "$artifact" ] || echo "keep it: mkdir -p tests/fuzz/regressions/$name && cp $artifact tests/fuzz/regressions/$name/"
    status=1
  fi
done
printf '%s' "$summary"
[ -n "$summary" ] || { echo "FAIL: no fuzz target in $BUILD"; status=1; }
exit $status

#!/usr/bin/env bash
# bench/overhead.sh BUILD: part 2, the framework's own cost with no OCR at all.
# ocrpool's null engine through HTTP and the SQLite store, against RQ (the
# queue docling-serve uses) running no-op jobs through redis-server on
# loopback, 2 workers each. The same Python client pattern drives both:
# the 1-page document goes with each task, which is then polled every 5 ms.
source "$(dirname "$0")/lib.sh"

N=${OVERHEAD_TASKS:-400}     # tasks per throughput run
CLIENTS=8                    # closed-loop clients
LAT_N=${OVERHEAD_LAT_TASKS:-100} # tasks per latency run ...
LAT_RATE=20                  # ... offered at this many per second
WORKERS=2
DOC=$DATA/crom.png # 400x50, one page: the null engine reads it and writes nothing
command -v redis-server >/dev/null || die "no redis-server (apt-get install redis-server)"
"$PY" -c 'import rq' 2>/dev/null || die "no RQ for $PY (apt-get install python3-rq)"

# Our own redis-server on a free loopback port, with its defaults otherwise
# (persistence included); stopped at the end (cleanup in lib.sh).
PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$WORK/redis"
redis-server --port "$PORT" --bind 127.0.0.1 --dir "$WORK/redis" --logfile "$WORK/redis/redis.log" &
REDIS_PID=$!
BG_PIDS+=("$REDIS_PID")
REDIS=redis://127.0.0.1:$PORT
for _ in $(seq 1 100); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done

# rq_round CLASS KEY: two workers of CLASS, one throughput and one latency run,
# then a check in the workers' own logs that they ran every job. The CPU per
# job is redis-server's and the workers' (with their work horses).
rq_round() {
  local cls=$1 key=$2 pids=() i out rate p50 p99 ok c0 c1
  rm -f "$WORK"/rq-*.log
  for i in $(seq 1 "$WORKERS"); do
    "$PY" -m rq.cli worker --url "$REDIS" -w "$cls" -P "$BENCH" bench >"$WORK/rq-$i.log" 2>&1 & # `rq worker`
    pids+=($!)
  done
  BG_PIDS+=("${pids[@]}")
  "$PY" "$BENCH/rq_load.py" workers "$REDIS" "$WORKERS"
  c0=$(cpu_ms "$REDIS_PID" "${pids[@]}")
  if rate=$("$PY" "$BENCH/rq_load.py" rate "$REDIS" "$DOC" "$N" "$CLIENTS") &&
    c1=$(cpu_ms "$REDIS_PID" "${pids[@]}") &&
    out=$("$PY" "$BENCH/rq_load.py" latency "$REDIS" "$DOC" "$LAT_N" "$LAT_RATE"); then
    read -r p50 p99 <<<"$out"
  fi
  kill -TERM "${pids[@]}" # a warm shutdown: each ends its job first
  wait "${pids[@]}" || true
  ok=$(cat "$WORK"/rq-*.log | grep -c 'Job OK' || true)
  if [ -n "${p99:-}" ] && [ "$ok" -ge $((N + LAT_N)) ]; then
    add "$key.rate" "$rate"
    add "$key.cpu" "$(calc "($c1 - $c0) / $N")"
    add "$key.p50" "$p50"
    add "$key.p99" "$p99"
    log "$key: $rate jobs/s, $(printf %.2f "$(calc "($c1 - $c0) / $N")") CPU ms a job, p50 $p50 ms, p99 $p99 ms ($ok jobs logged OK)"
  else
    FAIL[$key.rate]=$((${FAIL[$key.rate]:-0} + 1))
    log "$key: FAILED ($ok jobs logged OK of $((N + LAT_N)))"
  fi
}

# ocrpool_round KEY ROUTE: ROUTE "rate" polls POST /v1/tasks; "ocr" waits in
# POST /v1/ocr, which answers with the result. The CPU per task is the
# server's and its workers'.
ocrpool_round() {
  local key=$1 rate out p50 p99 c0 c1
  c0=$(cpu_ms "$SERVER_PID")
  if rate=$("$PY" "$BENCH/http_load.py" "$2" "$BASE" "$DOC" "$N" "$CLIENTS" engine=null); then
    c1=$(cpu_ms "$SERVER_PID")
    add "$key.rate" "$rate"
    add "$key.cpu" "$(calc "($c1 - $c0) / $N")"
    log "$key: $rate tasks/s, $(printf %.2f "$(calc "($c1 - $c0) / $N")") CPU ms a task"
  else
    FAIL[$key.rate]=$((${FAIL[$key.rate]:-0} + 1))
  fi
  if [ "$2" = rate ] && out=$("$PY" "$BENCH/http_load.py" latency "$BASE" "$DOC" "$LAT_N" "$LAT_RATE" engine=null); then
    read -r p50 p99 <<<"$out"
    add "$key.p50" "$p50"
    add "$key.p99" "$p99"
    log "$key: p50 $p50 ms, p99 $p99 ms"
  fi
}

# One server, warmed (its workers started) before the first run; and a second
# one whose store is on tmpfs, to show what the file system costs (each task
# creates and removes a directory and a few files; see docs/benchmarks.md).
SHM=$(mktemp -d /dev/shm/ocrpool-bench.XXXXXX)
MORE_DIRS+=("$SHM")
start_server "$SHM/var" --workers "$WORKERS"
SHM_PID=$SERVER_PID SHM_BASE=$BASE
BG_PIDS+=("$SHM_PID")
SERVER_PID=
start_server "$WORK/var" --workers "$WORKERS"
for b in "$BASE" "$SHM_BASE"; do "$PY" "$BENCH/http_load.py" rate "$b" "$DOC" 16 8 engine=null >/dev/null; done

# ocrpool_tmpfs: the tasks/s run against the server on tmpfs.
ocrpool_tmpfs() {
  local rate c0 c1
  c0=$(cpu_ms "$SHM_PID")
  if rate=$("$PY" "$BENCH/http_load.py" rate "$SHM_BASE" "$DOC" "$N" "$CLIENTS" engine=null); then
    c1=$(cpu_ms "$SHM_PID")
    add ocrpool_shm.rate "$rate"
    add ocrpool_shm.cpu "$(calc "($c1 - $c0) / $N")"
    log "ocrpool_shm: $rate tasks/s, $(printf %.2f "$(calc "($c1 - $c0) / $N")") CPU ms a task"
  else
    FAIL["ocrpool_shm.rate"]=$((${FAIL["ocrpool_shm.rate"]:-0} + 1))
  fi
}

for r in $(seq 1 "$RUNS"); do
  log "overhead round $r of $RUNS"
  quiet
  rq_round rq.worker.SimpleWorker rq_simple
  rq_round rq.worker.Worker rq_fork
  ocrpool_round ocrpool rate
  ocrpool_round ocrpool_sync ocr
  ocrpool_tmpfs
done
stop_server
SERVER_PID=$SHM_PID
stop_server

lat() { # KEY: the latency cells, "-" where not measured
  if has "$1.p50"; then echo "$(cells "$1.p50" %.1f) | $(cells "$1.p99" %.1f)"; else echo "not measured | - | - | -"; fi
}
row() {
  echo "| $2 | $(cells "$1.rate" %.0f) | $(ratio "$1.rate" rq_simple.rate up) | $(cells "$1.cpu" %.2f) | $(lat "$1") |"
}

echo "### 2. Framework overhead: 1-page tasks, no OCR, $WORKERS workers"
echo
echo "Tasks/s: $N tasks from $CLIENTS closed-loop clients (submit with the 400x50 crom.png, poll every"
echo "5 ms, read the result). Latency: submit to result, $LAT_N tasks offered at $LAT_RATE/s (open loop)."
echo "CPU: what the queue's processes used per task during the tasks/s run (server and workers;"
echo "redis-server and workers), the client's not counted. $RUNS runs each; ratio: tasks/s over the reference's."
echo
echo "| contender | median tasks/s | min-max | ratio to reference | CPU ms per task | min-max | median p50 ms | min-max | median p99 ms | min-max |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
row rq_simple "RQ $("$PY" -c 'import rq; print(rq.__version__)') \`SimpleWorker\` x $WORKERS, redis-server on loopback (reference)"
row rq_fork "RQ \`Worker\` (forks a work horse per job) x $WORKERS"
row ocrpool "\`ocrpool serve --workers $WORKERS\`, \`engine=null\`, POST /v1/tasks then polling, SQLite store"
row ocrpool_sync "... the same through POST /v1/ocr (answers with the result)"
row ocrpool_shm "... POST /v1/tasks then polling, the store (\`--data-dir\`) on tmpfs"
echo
echo "Goals:"
echo
goal "2. ocrpool's tasks/s against RQ SimpleWorker's jobs/s" "$(ratio ocrpool.rate rq_simple.rate up)" ">=" 20
echo

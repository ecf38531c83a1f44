#!/usr/bin/env bash
# bench/cluster.sh BUILD: part 5, several nodes on one PostgreSQL (issue 12).
# On a throwaway PostgreSQL cluster of the bench's own (tests/pg.sh), with
# pg_stat_statements to count the statements (database round trips) each
# task costs:
#  (a) null-engine tasks: tasks/s and submit-to-result p50/p99 for one node on
#      SQLite (the reference), one node on PostgreSQL, three nodes on
#      PostgreSQL (the clients spread over them), and one node claiming one
#      task per query (store.claim_batch: 1; a node never holds more tasks
#      than workers, so the batch matters only where it has room for several);
#      The reference keeps every acknowledgement through a power loss (each
#      commit, upload and result fsynced); OCRPOOL_SYNC=normal, beside it,
#      shows what that costs (issue 18);
#  (b) OCR throughput: the image directory twice, one node with 3 workers
#      against three nodes with one worker each, on PostgreSQL.
# Every node runs on this machine: the figures are what several nodes cost,
# not what several machines gain.
source "$(dirname "$0")/lib.sh"
source "$ROOT/tests/pg.sh"

N=${CLUSTER_TASKS:-300}              # tasks per throughput run
CLIENTS=8                            # closed-loop clients
LAT_N=${CLUSTER_LAT_TASKS:-100}      # tasks per latency run ...
LAT_RATE=20                          # ... offered at this many per second
DOC=$DATA/crom.png                   # 1 page, 400x50: the null engine reads it and writes nothing
export OCRPOOL_STORE_HEARTBEAT=1s OCRPOOL_STORE_LEASE=5s

pg_cluster_start "$WORK/pgc" >/dev/null || die "PostgreSQL did not start"
trap 'pg_cluster_stop "$WORK/pgc"; cleanup' EXIT
PGURL=$(pg_cluster_url "$WORK/pgc")
psql -XAtq -d "$PGURL" -c "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'" >/dev/null
pg_cluster_restart "$WORK/pgc" >/dev/null || die "PostgreSQL did not restart"
psql -XAtq -d "$PGURL" -c "CREATE EXTENSION pg_stat_statements" >/dev/null
DBN=0
# new_db: a fresh database; its URL in DB.
new_db() {
  DBN=$((DBN + 1))
  psql -XAtq -d "$PGURL" -c "CREATE DATABASE bench_$DBN" >/dev/null
  DB=${PGURL/\/postgres\?//bench_$DBN?}
}
# statements DB_URL: "ALL READS" the statements run in that database so far
# (pg_stat_statements), and of them the reads of one task by id (the clients'
# polls through GET /v1/tasks/{id}, which the client's poll rate sets).
statements() {
  local db=${1%%\?*}
  db=${db##*/}
  psql -XAtq -F ' ' -d "$PGURL" -c "SELECT coalesce(sum(calls), 0),
    coalesce(sum(calls) FILTER (WHERE query LIKE 'SELECT % FROM tasks WHERE id = \$1'), 0)
    FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = '$db'"
}

NODE_PIDS=()
# nodes K WORKERS STORE [ARGS...]: K nodes of WORKERS workers on STORE ("" = SQLite in
# its own data directory); sets BASES (comma-separated) and NODE_PIDS.
nodes() {
  local k=$1 workers=$2 store=$3 i
  shift 3
  BASES= NODE_PIDS=()
  for i in $(seq 1 "$k"); do
    start_server "$WORK/node$DBN-$i-$RANDOM" --workers "$workers" ${store:+--store "$store"} "$@"
    NODE_PIDS+=("$SERVER_PID")
    BG_PIDS+=("$SERVER_PID")
    BASES=${BASES:+$BASES,}$BASE
    SERVER_PID=
  done
}
stop_nodes() {
  local p
  for p in "${NODE_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${NODE_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  NODE_PIDS=()
}

# null_round KEY K WORKERS STORE [ARGS...]: fresh nodes, warmed, then a tasks/s
# run (its statements counted) and a latency run.
null_round() {
  local key=$1 k=$2 workers=$3 store=$4 rate out p50 p99 s0 s1 c0 c1
  shift 4
  nodes "$k" "$workers" "$store" "$@"
  "$PY" "$BENCH/http_load.py" rate "$BASES" "$DOC" 16 8 engine=null >/dev/null
  [ -z "$store" ] || read -r s0 r0 <<<"$(statements "$store")"
  c0=$(cpu_ms "${NODE_PIDS[@]}")
  if rate=$("$PY" "$BENCH/http_load.py" rate "$BASES" "$DOC" "$N" "$CLIENTS" engine=null); then
    c1=$(cpu_ms "${NODE_PIDS[@]}")
    add "$key.rate" "$rate"
    add "$key.cpu" "$(calc "($c1 - $c0) / $N")"
    if [ -n "$store" ]; then
      read -r s1 r1 <<<"$(statements "$store")"
      add "$key.stmts" "$(calc "($s1 - $s0 - ($r1 - $r0)) / $N")"
      add "$key.polls" "$(calc "($r1 - $r0) / $N")"
      log "$key: $(printf %.1f "$(calc "($s1 - $s0 - ($r1 - $r0)) / $N")") statements a task, and $(printf %.1f "$(calc "($r1 - $r0) / $N")") reads of it by the clients' polls"
    fi
    log "$key: $rate tasks/s, $(printf %.2f "$(calc "($c1 - $c0) / $N")") CPU ms a task"
  else
    FAIL[$key.rate]=$((${FAIL[$key.rate]:-0} + 1))
  fi
  if out=$("$PY" "$BENCH/http_load.py" latency "$BASES" "$DOC" "$LAT_N" "$LAT_RATE" engine=null); then
    read -r p50 p99 <<<"$out"
    add "$key.p50" "$p50"
    add "$key.p99" "$p99"
    log "$key: p50 $p50 ms, p99 $p99 ms"
  fi
  stop_nodes
}

# ocr_round KEY K WORKERS STORE: fresh nodes, warmed on one page each, then
# every image twice as tasks spread over the nodes; checked, timed.
make_images
ocr_files=("${IMAGES[@]}" "${IMAGES[@]}")
# (The nodes are not the run's children: their CPU is added through cpu.more.)
ocr_run() {
  local c0
  rm -rf "$WORK/out"
  mkdir -p "$WORK/out"
  c0=$(cpu_ms "${NODE_PIDS[@]}")
  "$PY" "$BENCH/http_load.py" pages "$BASES" "$WORK/out" format=txt "${ocr_files[@]}" >/dev/null
  calc "($(cpu_ms "${NODE_PIDS[@]}") - $c0) / 1000" >"$WORK/cpu.more"
  check_texts "$WORK/out" "${#ocr_files[@]}" "$1"
}
ocr_round() {
  local key=$1 k=$2 workers=$3 store=$4
  nodes "$k" "$workers" "$store"
  mkdir -p "$WORK/warm"
  "$PY" "$BENCH/http_load.py" pages "$BASES" "$WORK/warm" format=txt $(for _ in $(seq 1 "$k"); do echo "$DATA/phototest.tif"; done) >/dev/null
  timed "$key" ocr_run "$key"
  stop_nodes
}

for r in $(seq 1 "$RUNS"); do
  log "cluster round $r of $RUNS"
  quiet
  null_round sqlite1 1 3 ""
  OCRPOOL_SYNC=normal null_round sqlite1n 1 3 ""
  new_db && null_round pg1 1 3 "$DB"
  new_db && null_round pg3 3 1 "$DB"
  new_db && OCRPOOL_STORE_CLAIM_BATCH=1 null_round pg1_b1 1 3 "$DB"
  quiet
  new_db && ocr_round ocr_pg1 1 3 "$DB"
  new_db && ocr_round ocr_pg3 3 1 "$DB"
done

lat() { if has "$1.p50"; then echo "$(cells "$1.p50" %.1f) | $(cells "$1.p99" %.1f)"; else echo "not measured | - | - | -"; fi; }
stm() { if has "$1.stmts"; then echo "$(cells "$1.stmts" %.1f) | $(cells "$1.polls" %.1f)"; else echo "- | - | - | -"; fi; }
row() {
  echo "| $2 | $(cells "$1.rate" %.0f) | $(ratio "$1.rate" sqlite1.rate up) | $(cells "$1.cpu" %.2f) | $(lat "$1") | $(stm "$1") |"
}

echo "### 5. Several nodes on one PostgreSQL"
echo
echo "All on this machine, PostgreSQL $(psql -XAtq -d "$PGURL" -c 'SHOW server_version') on a Unix socket (tests/pg.sh's"
echo "throwaway cluster: fsync off, synchronous_commit on: commits reach the OS, not the disk);"
echo "3 workers in all for every contender."
echo
echo "**(a) Null-engine tasks.** Tasks/s: $N 1-page tasks from $CLIENTS closed-loop clients, each client"
echo "on one node in turn (submit, poll every 5 ms, read the result from the node it submitted to)."
echo "Latency: submit to result, $LAT_N tasks offered at $LAT_RATE/s. CPU: the nodes' and their"
echo "workers' per task (PostgreSQL's not counted). Statements: what the database ran per task during"
echo "the tasks/s run (pg_stat_statements: every statement is a round trip, BEGIN and COMMIT"
echo "included, as are the nodes' heartbeats and polls), apart from the clients' reads of the task"
echo "(GET /v1/tasks/{id} every 5 ms until it ends), counted beside. One task is one page here."
echo "Ratio: tasks/s over the reference's."
echo
echo "| contender | median tasks/s | min-max | ratio to reference | CPU ms per task | min-max | median p50 ms | min-max | median p99 ms | min-max | statements per task | min-max | client polls per task | min-max |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
row sqlite1 "1 node, SQLite, \`--workers 3\` (reference)"
row sqlite1n "... the same with \`OCRPOOL_SYNC=normal\` (safe against a killed process, not a power loss)"
row pg1 "1 node, PostgreSQL, \`--workers 3\`"
row pg1_b1 "... the same with \`store.claim_batch: 1\`"
row pg3 "3 nodes, PostgreSQL, \`--workers 1\` each"
echo
echo "Published figures of Postgres job queues, on their own hardware, for no-op jobs (not measured"
echo "here; no such queue is packaged in Debian 12 to run side by side): graphile-worker ~183,000"
echo "jobs/s executed, 4.16 ms average add-to-start latency (4 instances x 24 concurrent jobs, local"
echo "queue batches of 500, \"a well-specced database server\": worker.graphile.org/docs/performance);"
echo "PgQueuer 6,400-18,000 jobs/s (5 dequeuers, batches of 10, their reference machine:"
echo "pgqueuer's docs, Benchmarks). Those jobs are a row each; an ocrpool task here is an HTTP"
echo "upload, its document stored as a blob, a claim, a probe and a page on a worker process, about"
echo "ten events, and every record committed (fsync) on its own, so that a kill loses nothing."
echo
echo "**(b) OCR throughput.** ${#ocr_files[@]} tasks (the image directory of part 1, twice) submitted at"
echo "once, spread over the nodes, all on PostgreSQL; seconds until the last result, checked."
echo
echo "| contender | median s | min-max | ratio to reference | CPU s | min-max |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
echo "| 1 node, \`--workers 3\` (reference) | $(cells ocr_pg1 %.2f) | 1.000 | $(cells ocr_pg1.cpu %.1f) |"
echo "| 3 nodes, \`--workers 1\` each | $(cells ocr_pg3 %.2f) | $(ratio ocr_pg3 ocr_pg1 down) | $(cells ocr_pg3.cpu %.1f) |"
echo
echo "Goals:"
echo
goal "5. OCR throughput of three nodes against one with the same workers" "$(ratio ocr_pg3 ocr_pg1 down)" ">=" 0.95
echo

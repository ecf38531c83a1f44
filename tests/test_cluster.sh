#!/usr/bin/env bash
# Several nodes on one PostgreSQL database (issue 12), on a cluster of its own
# (tests/pg.sh): three nodes, each with its own data directory and nothing
# shared but the database.
#  1. 60 tasks submitted round-robin all succeed, every node ran pages, no
#     page is recorded twice, and every node answers for every task and its
#     result, whichever node accepted or ran it.
#  2. kill -9 one node under load: every acknowledged task (those it accepted
#     too) ends succeeded with each page done once; its tasks are taken over
#     by the others once its lease lapses.
#  3. A node paused (SIGSTOP) past its lease while its page runs, then resumed
#     (SIGCONT): another node claimed the task and ran the page; the paused
#     node records nothing of it.
# Heartbeats of 0.5 s and a lease of 3 s keep it quick; the null engine's
# pages sleep so that work overlaps.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/pg.sh"

pg_cluster_start "$TMP/pgc" || { fail "PostgreSQL did not start (see above)"; done_testing; exit 1; }
trap 'for p in $(jobs -p); do kill -CONT "$p" 2>/dev/null; kill -KILL "$p" 2>/dev/null; done; pg_cluster_stop "$TMP/pgc"; cleanup' EXIT
base_url=$(pg_cluster_url "$TMP/pgc")
psql -XAtq -v ON_ERROR_STOP=1 -d "$base_url" -c "CREATE DATABASE ocrpool_cluster" ||
  { fail "cannot create the database"; done_testing; exit 1; }
URL="${base_url/\/postgres\?//ocrpool_cluster?}"
sql() { psql -XAtq -v ON_ERROR_STOP=1 -d "$URL" -c "$1"; }

export OCRPOOL_STORE_HEARTBEAT=0.5s OCRPOOL_STORE_LEASE=3s
qpdf --empty --pages "$DATA/linn.pdf" "$DATA/linn.pdf" -- "$TMP/two.pdf"
declare -A PID PORT

# node NAME [SLEEP_MS]: starts node NAME from its own data directory on the database; waits for /healthz.
node() {
  local name=$1 sleep_ms=${2:-150}
  rm -f "$TMP/port.$name"
  OCRPOOL_NULL_OPTS=sleep_ms=$sleep_ms "$OCRPOOL" serve --listen 127.0.0.1:0 --port-file "$TMP/port.$name" \
    --data-dir "$TMP/$name" --store "$URL" --workers 1 2>>"$TMP/$name.log" &
  PID[$name]=$!
  for _ in $(seq 1 600); do
    if [ -s "$TMP/port.$name" ]; then
      PORT[$name]=$(cat "$TMP/port.$name")
      curl -fs "http://127.0.0.1:${PORT[$name]}/healthz" >/dev/null && return 0
    fi
    kill -0 "${PID[$name]}" 2>/dev/null || break
    sleep 0.1
  done
  fail "node $name did not start"
  cat "$TMP/$name.log"
  return 1
}
node_id() { curl -s "http://127.0.0.1:${PORT[$1]}/v1/nodes" | python3 -c "
import json, sys; print([n['id'] for n in json.load(sys.stdin)['nodes'] if n['self']][0])"; }
# on NAME: BASE of node NAME, for lib.sh's helpers.
on() { BASE="http://127.0.0.1:${PORT[$1]}"; }
# pages_twice IDS...: no page of these tasks has two page_done events, and each has all its pages done.
pages_once() {
  python3 - "$@" <<PY
import json, sys, urllib.request, collections
bad = []
for id in sys.argv[1:]:
    ev = json.load(urllib.request.urlopen('$BASE/v1/tasks/%s/events' % id))['events']
    done = collections.Counter(e['details']['page'] for e in ev if e['type'] == 'page_done')
    if done != {1: 1, 2: 1}:
        bad.append((id, dict(done)))
assert not bad, bad
PY
}
# wait_all IDS...: every task ends; prints how many succeeded.
wait_all() {
  local ok=0
  for id in "$@"; do [ "$(wait_task "$id" 180)" = succeeded ] && ok=$((ok + 1)); done
  echo "$ok"
}

# c's pages are slow (1.5 s), so that the kill below finds it mid-task.
node a && node b && node c 1500 || { done_testing; exit 1; }
A=$(node_id a) B=$(node_id b) C=$(node_id c)
on a
check "GET /v1/nodes on any node lists the three, alive" python3 -c "
import json, urllib.request
d = json.load(urllib.request.urlopen('$BASE/v1/nodes'))
assert sorted(n['id'] for n in d['nodes'] if n['alive']) == sorted(['$A', '$B', '$C']), d"

check "/metrics is per node: each says which node it is" bash -c "
curl -s http://127.0.0.1:${PORT[a]}/metrics | grep -q '^ocrpool_node_info{node=\"$A\",' &&
curl -s http://127.0.0.1:${PORT[c]}/metrics | grep -q '^ocrpool_node_info{node=\"$C\",'"

# ---- 1. 60 tasks round-robin ----
ids=()
names=(a b c)
for i in $(seq 0 59); do
  on "${names[$((i % 3))]}"
  ids+=("$(submit "$TMP/two.pdf" "engine=null")")
done
check "60 tasks acknowledged" test "$(printf '%s\n' "${ids[@]}" | grep -cx '[0-9a-f]\{32\}')" -eq 60
on b
ok=$(wait_all "${ids[@]}")
check "all 60 succeeded ($ok), read from node b" test "$ok" -eq 60
check "each page of each task recorded done once" pages_once "${ids[@]}"
ran=$(sql "SELECT details->>'node', count(*) FROM task_events WHERE type = 'page_done' GROUP BY 1 ORDER BY 1" | tr '\n' ' ')
check "every node ran pages (node|pages: $ran)" python3 -c "
got = dict(l.split('|') for l in '''$ran'''.split())
assert set(got) == {'$A', '$B', '$C'} and all(int(v) > 0 for v in got.values()), got"
on c
check "node c answers for a task node a accepted (status and text result)" python3 -c "
import json, urllib.request
t = json.load(urllib.request.urlopen('$BASE/v1/tasks/${ids[0]}'))
assert t['status'] == 'succeeded' and t['pages_done'] == 2, t
r = urllib.request.urlopen('$BASE/v1/tasks/${ids[0]}/result').read()
assert len(r) > 0, r"
check "... and for one each node ran: every result is the same text" python3 -c "
import urllib.request
texts = {urllib.request.urlopen('$BASE/v1/tasks/%s/result' % i).read() for i in '${ids[*]}'.split()}
assert len(texts) == 1, len(texts)"
check "the documents, fragments and results are stored as blobs" test "$(sql "SELECT count(DISTINCT name) > 3 FROM blobs")" = t

# ---- 2. kill -9 a node under load ----
ids=()
for i in $(seq 0 29); do
  on "${names[$((i % 3))]}"
  ids+=("$(submit "$TMP/two.pdf" "engine=null&format=txt,json")")
done
check "30 more tasks acknowledged" test "$(printf '%s\n' "${ids[@]}" | grep -cx '[0-9a-f]\{32\}')" -eq 30
c_running() { [ "$(sql "SELECT count(*) FROM tasks WHERE node_id = '$C' AND status = 'running'")" -gt 0 ]; }
check "node c runs a task" wait_for 60 c_running
kill -KILL "${PID[c]}"
wait "${PID[c]}" 2>/dev/null
killed_at=$(date +%s.%N)
# What c held when it died (its row can no longer change).
held=$(sql "SELECT id FROM tasks WHERE node_id = '$C' AND status IN ('queued', 'running')" | tr '\n' ' ')
check "node c died holding unfinished tasks ($held)" test -n "${held// /}"
on a
ok=$(wait_all "${ids[@]}")
check "every acknowledged task succeeded after the kill ($ok of 30)" test "$ok" -eq 30
check "... each page recorded done once" pages_once "${ids[@]}"
check "the tasks node c held (${held}) were finished by a and b" python3 -c "
import json, urllib.request
for id in '$held'.split():
    ev = json.load(urllib.request.urlopen('$BASE/v1/tasks/%s/events' % id))['events']
    last = [e['details']['node'] for e in ev if e['type'] == 'page_done'][-1]
    assert last in ('$A', '$B'), (id, last)"
check "... their JSON results hold both pages (fragments done on c are fetched from the store)" python3 -c "
import json, urllib.request
for id in '$held'.split():
    r = json.load(urllib.request.urlopen('$BASE/v1/tasks/%s/result?format=json' % id))
    assert [p['page'] for p in r['pages']] == [1, 2], (id, r)"
took=$(sql "SELECT round((min(time) - $killed_at)::numeric, 2) FROM task_events WHERE type = 'page_started'
  AND details->>'node' <> '$C' AND task_id IN ('$(echo $held | sed "s/ /','/g")') AND time > $killed_at")
echo "# taken over ${took} s after the kill (lease 3 s, poll 1 s)"
check "/v1/nodes shows node c not alive" python3 -c "
import json, urllib.request
d = json.load(urllib.request.urlopen('$BASE/v1/nodes'))
assert [n['alive'] for n in d['nodes'] if n['id'] == '$C'] == [False], d"

# ---- 3. a node paused past its lease cannot record its stale result ----
node d 4000 || { done_testing; exit 1; }
D=$(node_id d)
on d
id=$(submit "$TMP/two.pdf" "engine=null")
d_started() { [ "$(sql "SELECT count(*) FROM task_events WHERE task_id = '$id' AND type = 'page_started' AND details->>'node' = '$D'")" -gt 0 ]; }
check "node d started a page of its task" wait_for 60 d_started
kill -STOP "${PID[d]}"
claimed_away() { [ "$(sql "SELECT node_id <> '$D' AND node_id <> '' FROM tasks WHERE id = '$id'")" = t ]; }
check "paused past its lease, its task is claimed by another node" wait_for 60 claimed_away
kill -CONT "${PID[d]}"
on a
check "the task succeeds" test "$(wait_task "$id" 120)" = succeeded
check "... each page recorded done once" pages_once "$id"
check "... by the nodes that claimed it, none by the paused node" test \
  "$(sql "SELECT count(*) FROM task_events WHERE task_id = '$id' AND type = 'page_done' AND details->>'node' = '$D'")" = 0
check "node d said that it lost the task and recorded nothing" wait_for 30 grep -q "another node claimed it" "$TMP/d.log"
check "node d is alive again afterwards" curl -fs "http://127.0.0.1:${PORT[d]}/healthz" -o /dev/null

for n in a b d; do
  kill -TERM "${PID[$n]}"
  wait "${PID[$n]}"
  check "node $n exits 0 on SIGTERM" test $? -eq 0
done
check "no sanitizer report from any node" bash -c "! grep -l 'Sanitizer\|runtime error:' $TMP/*.log"
check "a clean stop lets go of every task: none is held" test "$(sql "SELECT count(*) FROM tasks WHERE node_id IN ('$A', '$B', '$D') AND status IN ('queued', 'running')")" = 0
done_testing

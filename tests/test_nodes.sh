#!/usr/bin/env bash
# Nodes, the servers sharing a store: GET /v1/nodes lists this server (self,
# alive, its host and workers) with a heartbeat that advances; page_started
# events name it; a drain is written to its row at once and a clean stop
# deletes the row. A second server on the same data directory is refused
# (exit 2, node.lock); from another data directory it joins the same store as
# a second node on PostgreSQL, and waits for the lease on SQLite, which keeps
# each task's files in its node's data directory. A killed node's row stays, shown not alive once store.lease
# has passed, and goes at once when it starts again on its own data directory.
# Heartbeats of 0.2 s and a lease of 1 s keep it quick. (Several nodes sharing
# the work: test_cluster.sh.)
source "$(dirname "$0")/lib.sh"

export OCRPOOL_STORE_HEARTBEAT=0.2s OCRPOOL_STORE_LEASE=1s
export OCRPOOL_NULL_OPTS=sleep_ms=2000
qpdf --empty --pages "$DATA/linn.pdf" "$DATA/linn.pdf" -- "$TMP/two.pdf"
HOST=$(hostname)
LOCKED='another ocrpool serve uses the data directory .*node.lock'

# nodes_py 'PYTHON': runs PYTHON with d = $BASE's GET /v1/nodes; exits with its verdict.
nodes_py() {
  curl -s "$BASE/v1/nodes" | python3 -c "import json,sys; d=json.load(sys.stdin); $1" 2>/dev/null
}
# same_store: STORE_ARGS for a server on the first server's store ($TMP/var's)
# from another data directory, as a second machine would run.
same_store() {
  STORE_ARGS=()
  if type store_args >/dev/null 2>&1; then store_args "$TMP/var" || return 1; fi
  [ "${#STORE_ARGS[@]}" -gt 0 ] || STORE_ARGS=(--store "sqlite:$TMP/var/ocrpool.db")
}

start_server "$TMP/var" --workers 2 || { done_testing; exit 1; }
curl -s "$BASE/v1/nodes" -o "$TMP/nodes.json"
check "GET /v1/nodes: exactly this node, self, alive, 2 workers, host $HOST, lease 1 s" python3 -c "
import json; d=json.load(open('$TMP/nodes.json'))
assert d['lease_s'] == 1 and len(d['nodes']) == 1, d
n = d['nodes'][0]
assert n['self'] is True and n['alive'] is True and n['draining'] is False, n
assert n['workers'] == 2 and n['pages_running'] == 0 and n['host'] == '$HOST', n
assert len(n['id']) == 32 and 0 <= n['age_s'] < 1 and n['started_at'] <= n['last_heartbeat'], n
assert n['memory']['cpu']['budget_bytes'] > 0 and n['memory']['cpu']['used_bytes'] >= 0, n"
node=$(python3 -c "import json; print(json.load(open('$TMP/nodes.json'))['nodes'][0]['id'])")
beat=$(python3 -c "import json; print(json.load(open('$TMP/nodes.json'))['nodes'][0]['last_heartbeat'])")
check "its heartbeat advances (after $beat)" wait_for 10 nodes_py "assert d['nodes'][0]['last_heartbeat'] > '$beat'"

# A second server on the same data directory while the first runs: refused, exit 2.
store_args "$TMP/var" 2>/dev/null || STORE_ARGS=()
"$OCRPOOL" serve --listen 127.0.0.1:0 --data-dir "$TMP/var" "${STORE_ARGS[@]}" 2>"$TMP/second.err" >/dev/null
rc=$?
check "a second server on the same data directory exits 2 (got $rc)" test "$rc" -eq 2
check "... saying that another server uses the directory" grep -q "$LOCKED" "$TMP/second.err" || cat "$TMP/second.err"
check "the refused server left the running node's row alone" nodes_py "
assert [(n['id'], n['alive']) for n in d['nodes']] == [('$node', True)], d"

# SIGTERM while a page runs: the row says draining at once, with the page
# running, until the drain ends; a clean stop deletes the row.
id=$(submit "$TMP/two.pdf" "engine=null")
check "a page started" wait_started "$id"
kill -TERM "$SERVER_PID"
draining_seen() {
  [ "$(db "$TMP/var" "select draining from nodes where id='$node'" 2>/dev/null)" = 1 ] &&
    nodes_py "n = d['nodes'][0]; assert n['draining'] is True and n['pages_running'] >= 1, d"
}
check "draining: the store's row says so, as does /v1/nodes of the draining server, with the page running" \
  wait_for 5 draining_seen
wait "$SERVER_PID"
check "the drained server exits 0" test $? -eq 0
check "after a clean stop its row is gone" test "$(db "$TMP/var" "select count(*) from nodes")" = 0

# Killed (kill -9), a node leaves its row, which blocks other starts until the lease has passed.
start_server "$TMP/var" --workers 2 || { done_testing; exit 1; }
check "after the restart the drained task succeeds" test "$(wait_task "$id")" = succeeded
check "its first page_started event names the node that ran it" python3 -c "
import json, urllib.request
ev = json.load(urllib.request.urlopen('$BASE/v1/tasks/$id/events'))['events']
assert [e['details']['node'] for e in ev if e['type'] == 'page_started'][:1] == ['$node'], ev"
killed=$(nodes_py "print(d['nodes'][0]['id'])")
kill -KILL "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null
check "kill -9 leaves the node's row ($killed)" test "$(db "$TMP/var" "select count(*) from nodes where id='$killed'")" = 1
same_store || { done_testing; exit 1; }
# other_started: starts a server from $TMP/other; true once it listens, false when it exits (refused).
other_started() {
  rm -f "$TMP/port2"
  "$OCRPOOL" serve --listen 127.0.0.1:0 --port-file "$TMP/port2" --data-dir "$TMP/other" "${STORE_ARGS[@]}" \
    --workers 1 2>>"$TMP/other.log" &
  OTHER_PID=$!
  until [ -s "$TMP/port2" ]; do
    if ! kill -0 "$OTHER_PID" 2>/dev/null; then
      wait "$OTHER_PID"
      return 1
    fi
    sleep 0.05
  done
}
if on_postgres; then
  check "a server from another data directory joins the same store at once" other_started || tail -5 "$TMP/other.log"
else
  # SQLite keeps a task's files in the data directory of the node that accepted
  # it: one live node at a time; a killed one stops blocking after the lease.
  check "a server from another data directory on the same SQLite file starts once store.lease (1 s) has passed" \
    wait_for 10 other_started || tail -5 "$TMP/other.log"
  check "... the starts refused before said why" bash -c \
    "! grep 'ocrpool serve:' '$TMP/other.log' | grep -v 'another ocrpool node (.* on .*, last seen .* s ago) uses this store, which keeps each task.s files'"
fi
BASE2="http://127.0.0.1:$(cat "$TMP/port2" 2>/dev/null)"
killed_not_alive() {
  curl -s "$BASE2/v1/nodes" | python3 -c "
import json, sys; d = json.load(sys.stdin)
got = {n['id']: (n['alive'], n['self']) for n in d['nodes']}
assert got.pop('$killed') == (False, False) and list(got.values()) == [(True, True)], d" 2>/dev/null
}
check "its /v1/nodes lists itself alive and, once store.lease (1 s) has passed, the killed node not alive" \
  wait_for 10 killed_not_alive
kill -TERM "$OTHER_PID"
wait "$OTHER_PID"
check "it stops cleanly" test $? -eq 0

# Killed and started again on its own data directory, a node does not wait for
# the lease: node.lock tells that the old one is gone (a lease of 60 s here).
export OCRPOOL_STORE_LEASE=60s
start_server "$TMP/var" --workers 1 || { done_testing; exit 1; }
check "started on its data directory, the node forgot the killed one's row" nodes_py "
assert [n['self'] for n in d['nodes']] == [True] and d['lease_s'] == 60, d"
killed=$(nodes_py "print(d['nodes'][0]['id'])")
kill -KILL "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null
check "killed (kill -9) and started again on the same data directory, it starts within the lease" \
  start_server "$TMP/var" --workers 1
check "... and lists only itself" nodes_py "assert [(n['self'], n['id'] != '$killed') for n in d['nodes']] == [(True, True)], d"
stop_server
check "after a clean stop no row is left" test "$(db "$TMP/var" "select count(*) from nodes")" = 0

# With tokens, GET /v1/nodes needs one, of any scope.
echo "submit-0123456789abcdef0123456789 submit alice" >"$TMP/tokens"
start_server "$TMP/auth" --workers 1 --tokens "$TMP/tokens" || { done_testing; exit 1; }
check "with tokens: GET /v1/nodes without one is 401" http_code_is "$BASE/v1/nodes" 401
check "... and 200 with a submit token" http_code_is "$BASE/v1/nodes" 200 \
  -H "Authorization: Bearer submit-0123456789abcdef0123456789"
stop_server
done_testing

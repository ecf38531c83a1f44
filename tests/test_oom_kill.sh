#!/usr/bin/env bash
# Issue 17, item 2: a worker killed by the kernel's OOM killer is no crash of
# its page's making. The server runs in a memory cgroup of the test's own
# (192 MB, no swap) with no memory_limit of ours on the model, so that only
# the real kernel acts: a page that allocates 512 MB is OOM-killed, and the
# server routes it to the out-of-memory path and fails it as out_of_memory
# (a single page on a CPU-only model: no smaller batch, no fallback), where
# before it counted crash attempts and ended worker_crashed. A page killed by
# an operator's SIGKILL at the same time is still a crash. Needs a writable
# memory cgroup (v1, or v2 with the memory controller delegated); skipped
# with a message where there is none.
source "$(dirname "$0")/lib.sh"

# ---- a memory cgroup of our own
CG=""
LIMIT=$((192 * 1024 * 1024))
make_cgroup() {
  local rel dir
  rel=$(sed -n 's/^[0-9]*:memory://p' /proc/self/cgroup)
  if [ -n "$rel" ]; then # v1: the memory controller's own hierarchy
    dir=/sys/fs/cgroup/memory$rel
    [ -d "$dir" ] || dir=/sys/fs/cgroup/memory
    mkdir "$dir/ocrpool-test-$$" 2>/dev/null || return 1
    CG=$dir/ocrpool-test-$$
    echo "$LIMIT" >"$CG/memory.limit_in_bytes" || return 1
    [ ! -e "$CG/memory.memsw.limit_in_bytes" ] || echo "$LIMIT" >"$CG/memory.memsw.limit_in_bytes" || return 1
    can_join
    return
  fi
  rel=$(sed -n 's/^0:://p' /proc/self/cgroup)
  dir=/sys/fs/cgroup${rel%/}
  grep -qw memory "$dir/cgroup.subtree_control" 2>/dev/null || return 1
  mkdir "$dir/ocrpool-test-$$" 2>/dev/null || return 1
  CG=$dir/ocrpool-test-$$
  echo "$LIMIT" >"$CG/memory.max" || return 1
  [ ! -e "$CG/memory.swap.max" ] || echo 0 >"$CG/memory.swap.max" || return 1
  can_join
}
# can_join: a process may move itself into the cgroup (a shell that then exits).
can_join() { sh -c "echo \$\$ >'$CG/cgroup.procs'" 2>/dev/null; }
# remove_cgroup: once what runs in it is gone (a failed check may leave a server).
remove_cgroup() {
  [ -n "$CG" ] && [ -d "$CG" ] || return 0
  local p
  for p in $(cat "$CG/cgroup.procs" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
  wait_for 30 test -z "$(cat "$CG/cgroup.procs" 2>/dev/null)"
  rmdir "$CG" 2>/dev/null
}
trap 'remove_cgroup; cleanup' EXIT
if ! make_cgroup; then
  echo "skipped: no memory cgroup can be made here (cgroup v1's memory controller, or v2 with memory in" \
    "cgroup.subtree_control, writable by this user): the kernel's OOM killer cannot be aimed at a test server"
  remove_cgroup
  exit 77
fi

# The server starts inside the cgroup (its workers inherit it): a wrapper joins
# it and becomes the server, so start_server's pid is the server's.
REAL=$OCRPOOL
cat >"$TMP/in-cgroup" <<EOF
#!/bin/sh
echo \$\$ >"$CG/cgroup.procs" || exit 70
exec "$REAL" "\$@"
EOF
chmod +x "$TMP/in-cgroup"
OCRPOOL=$TMP/in-cgroup

# ---- 1. an OOM-killed page fails as out_of_memory, not as a crash
OCRPOOL_NULL_OPTS=alloc_mb=512 start_server "$TMP/var" --workers 1 --log-level info || { done_testing; exit 1; }
check "the server runs in the test's cgroup" grep -qx "$SERVER_PID" "$CG/cgroup.procs"
id=$(submit "$DATA/phototest.tif" "engine=null&name=big.tif")
check "a page that needs 512 MB in a 192 MB cgroup: failed" test "$(wait_task "$id" 120)" = failed
curl -s "$BASE/v1/tasks/$id" -o "$TMP/t.json"
curl -s "$BASE/v1/tasks/$id/events" -o "$TMP/e.json"
check "... as out_of_memory, saying the kernel's OOM killer did it" python3 -c "
import json
t = json.load(open('$TMP/t.json'))
assert t['failure_reason'] == 'out_of_memory', t
assert 'OOM killer' in t['error'] and 'crashed' not in t['error'], t['error']"
check "... after one run, not three crash attempts (no retry: one page, no fallback)" python3 -c "
import json
ev = json.load(open('$TMP/e.json'))['events']
started = [e for e in ev if e['type'] == 'page_started']
assert len(started) == 1, [e['type'] for e in ev]
failed = [e for e in ev if e['type'] == 'page_failed']
assert len(failed) == 1 and failed[0]['details']['reason'] == 'out_of_memory', failed"
check "the kernel counted the kill in the cgroup" python3 -c "
import re
for name in ('memory.events', 'memory.oom_control'):
    try:
        text = open('$CG/' + name).read()
    except OSError:
        continue
    n = int(re.search(r'^oom_kill (\d+)', text, re.M).group(1))
    assert n >= 1, text
    break
else:
    raise SystemExit('no oom_kill counter')"
check "the server's log names the OOM killer" grep -q "killed by the kernel's OOM killer" "$TMP/server.log"
check "the server survived it (the worker was the one killed)" curl -fs "$BASE/healthz" -o /dev/null
curl -s "$BASE/metrics" -o "$TMP/metrics"
check "metrics: the worker's end counted as out of memory" grep -q 'ocrpool_worker_restarts_total{reason="out_of_memory"} [1-9]' "$TMP/metrics"
stop_server

# ---- 2. a SIGKILL from an operator, with no OOM kill, is still a crash
OCRPOOL_NULL_OPTS=sleep_ms=60000,sleep_attempts=1 start_server "$TMP/var2" --workers 1 || { done_testing; exit 1; }
id=$(submit "$DATA/phototest.tif" "engine=null&name=slow.tif")
check "a page is running" wait_started "$id" 60
check "... on a busy worker" wait_for 30 busy_workers 1
victim=$(curl -s "$BASE/v1/memory" | python3 -c '
import json, sys
print(*[w["pid"] for w in json.load(sys.stdin)["workers"] if w["state"] == "busy"])')
[ -z "$victim" ] || kill -KILL $victim
check "its worker ($victim) was killed from outside" test -n "$victim"
check "the page ran again and the task succeeded" test "$(wait_task "$id" 120)" = succeeded
curl -s "$BASE/v1/tasks/$id/events" -o "$TMP/e2.json"
check "... the kill recorded as a crash, not as out of memory" python3 -c "
import json
ev = json.load(open('$TMP/e2.json'))['events']
retried = [e['details']['reason'] for e in ev if e['type'] == 'retried']
assert len(retried) == 1, [e['type'] for e in ev]
assert 'signal 9' in retried[0] and 'memory' not in retried[0] and 'OOM' not in retried[0], retried"
stop_server
remove_cgroup
check "the test's cgroup is gone (nothing left in it)" test ! -d "$CG"
CG=""
done_testing

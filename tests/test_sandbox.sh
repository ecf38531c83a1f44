#!/usr/bin/env bash
# Issue 14, item 1: the worker sandbox. The null engine's escape=N (a test-only
# action, src/engine/null.c) does what an exploit in a document would: 1 reads
# /etc/passwd, 2 creates a file in /tmp, 3 opens a TCP socket, 4 executes
# /bin/sh. Each is refused and its page fails with sandbox_violation, while the
# server and a real page beside it go on; with the sandbox off the same actions
# work, which shows the test's probe is real.
source "$(dirname "$0")/lib.sh"

landlock=$(python3 -c 'import ctypes; l=ctypes.CDLL(None,use_errno=True); print(l.syscall(444,None,0,1))')
if [ "$landlock" -le 0 ] 2>/dev/null; then
  echo "note: this kernel has no Landlock: escapes 1 and 2 are not refused here (the seccomp checks still run)"
fi
escapes="3 4"
[ "$landlock" -gt 0 ] 2>/dev/null && escapes="1 2 3 4"
names=("" "reading /etc/passwd" "creating a file in /tmp" "opening a socket" "executing /bin/sh")
no_escape_file() { ! ls /tmp/ocrpool-escape-* >/dev/null 2>&1; }

# ---- ocrpool ocr ----
for n in $escapes; do
  OCRPOOL_NULL_OPTS=escape=$n run_ocr "$TMP/e$n.txt" "$TMP/e$n.err" "$DATA/phototest.tif" --engine null
  check "ocr: ${names[$n]} is refused: exit 4 (OCR failure)" test "$RC" -eq 4
  if [ "$n" -le 2 ]; then
    check "ocr: ${names[$n]}: the message says it was refused" grep -q "${names[$n]} was refused" "$TMP/e$n.err"
  else
    check "ocr: ${names[$n]}: the worker was killed by its filter (SIGSYS)" grep -q 'signal 31.*sandbox forbids' "$TMP/e$n.err"
    check "ocr: ${names[$n]}: tried once, not three times" test "$(grep -c 'signal 31' "$TMP/e$n.err")" -le 2
  fi
done
check "ocr: no file was created outside the scratch directory" no_escape_file
for n in 1 2 3; do
  OCRPOOL_NULL_OPTS=escape=$n run_ocr "$TMP/o$n.txt" "$TMP/o$n.err" "$DATA/phototest.tif" --engine null --sandbox off
  check "ocr --sandbox off: ${names[$n]} works (the probe is real)" test "$RC" -eq 0
done
check "ocr --sandbox off is warned about" grep -q 'without a sandbox' "$TMP/o1.err"
run_ocr "$TMP/bad.txt" "$TMP/bad.err" "$DATA/phototest.tif" --sandbox maybe
check "ocr --sandbox maybe: a usage error (2)" test "$RC" -eq 2
# The sandboxed Tesseract reads its model and writes every format, PDF included.
run_ocr "$TMP/all.err.txt" "$TMP/all.err" "$DATA/multipage.pdf" -f txt,pdf,json -o "$TMP/all" --pages 1
check "ocr: a sandboxed worker OCRs a PDF page into txt, pdf and json" test "$RC" -eq 0 -a -s "$TMP/all.pdf" -a -s "$TMP/all.json"
check "ocr: the text is there" grep -qi 'the' "$TMP/all.txt"

# ---- ocrpool serve ----
submit() { # FILE QUERY: prints the new task's id
  curl -s -X POST --data-binary @"$1" "$BASE/v1/tasks?$2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'
}
reason() { curl -s "$BASE/v1/tasks/$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["failure_reason"])'; }
event_reason() { # ID: the page_failed event's reason
  curl -s "$BASE/v1/tasks/$1/events" |
    python3 -c 'import json,sys; print([e["details"].get("reason") for e in json.load(sys.stdin)["events"] if e["type"]=="page_failed"])'
}
for n in $escapes; do
  OCRPOOL_NULL_OPTS=escape=$n start_server "$TMP/var$n" --workers 2 || break
  bad=$(submit "$DATA/phototest.tif" "engine=null&format=txt")
  good=$(submit "$DATA/phototest.tif" "format=txt")
  check "serve: ${names[$n]}: the task fails" test "$(wait_task "$bad" 120)" = failed
  check "serve: ${names[$n]}: its reason is sandbox_violation" test "$(reason "$bad")" = sandbox_violation
  check "serve: ${names[$n]}: its page_failed event says so" test "$(event_reason "$bad")" = "['sandbox_violation']"
  check "serve: ${names[$n]}: the real page beside it succeeds" test "$(wait_task "$good" 180)" = succeeded
  if [ "$n" = 3 ]; then
    check "serve: /v1/memory reports each worker's sandbox" python3 - "$BASE" "$(id -u)" "$landlock" <<'EOF'
import json, sys, time, urllib.request
base, uid, landlock = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for _ in range(300):  # the worker that ran the real page, once it said hello
    workers = [w for w in json.load(urllib.request.urlopen(base + "/v1/memory"))["workers"] if w["sandbox"]]
    if workers:
        break
    time.sleep(0.1)
assert workers, "no worker"
for w in workers:
    sb = w["sandbox"]
    assert sb["enabled"] and sb["seccomp"] and sb["no_new_privs"], sb
    assert sb["filesystem"] == ("landlock" if landlock > 0 else "none"), sb
    if uid == 0:  # run as root: its own network namespace, and a user that is not root
        assert sb["network"] == "namespace" and sb["user"] not in ("root", "0", ""), sb
EOF
  fi
  check "serve: ${names[$n]}: its text is whole" sh -c "curl -s '$BASE/v1/tasks/$good/result?format=txt' | grep -q 'quick brown'"
  check "serve: ${names[$n]}: the server still answers" curl -fs "$BASE/healthz" -o /dev/null
  stop_server
done
check "serve: no file was created outside the scratch directory" no_escape_file

OCRPOOL_NULL_OPTS=escape=3 start_server "$TMP/varoff" --workers 1 --sandbox off
id=$(submit "$DATA/phototest.tif" "engine=null&format=txt")
check "serve --sandbox off: the socket is opened, the task succeeds" test "$(wait_task "$id" 120)" = succeeded
check "serve --sandbox off is warned about" grep -q 'without a sandbox' "$TMP/server.log"
stop_server
"$OCRPOOL" serve --data-dir "$TMP/varbad" --sandbox maybe --listen 127.0.0.1:0 2>"$TMP/bad.log"
check "serve --sandbox maybe: refused at start (exit 2)" test $? -eq 2
check "serve --sandbox maybe: the message names the setting" grep -q 'server.sandbox: on or off' "$TMP/bad.log"
if [ "$(id -u)" = 0 ]; then
  "$OCRPOOL" serve --data-dir "$TMP/varuser" --worker-user no-such-user-here --listen 127.0.0.1:0 2>"$TMP/user.log"
  check "serve --worker-user of no user: refused at start (exit 2)" test $? -eq 2
  check "serve --worker-user of no user: the message names the user" grep -q 'no user named "no-such-user-here"' "$TMP/user.log"
fi

# ---- the mount namespace: the filesystem's layer where the kernel has no Landlock ----
# OCRPOOL_SANDBOX_FS=mount takes it even where Landlock exists, so that it is
# tested on every kernel; it needs CAP_SYS_ADMIN, so root.
if [ "$(id -u)" = 0 ]; then
  export OCRPOOL_SANDBOX_FS=mount
  for n in 1 2; do
    OCRPOOL_NULL_OPTS=escape=$n run_ocr "$TMP/m$n.txt" "$TMP/m$n.err" "$DATA/phototest.tif" --engine null
    check "mount namespace: ocr: ${names[$n]} is refused (exit 4)" test "$RC" -eq 4
    check "mount namespace: ocr: ${names[$n]}: the message says so" grep -q "${names[$n]} was refused" "$TMP/m$n.err"
  done
  check "mount namespace: no file was created outside the scratch directory" no_escape_file
  run_ocr "$TMP/mall.err.txt" "$TMP/mall.err" "$DATA/multipage.pdf" -f txt,pdf,json -o "$TMP/mall" --pages 1
  check "mount namespace: a worker OCRs a PDF page into txt, pdf and json" \
    test "$RC" -eq 0 -a -s "$TMP/mall.pdf" -a -s "$TMP/mall.json"
  check "mount namespace: ... the same text as under Landlock" cmp -s "$TMP/all.txt" "$TMP/mall.txt"
  OCRPOOL_NULL_OPTS=escape=1 start_server "$TMP/varmnt" --workers 2
  bad=$(submit "$DATA/phototest.tif" "engine=null&format=txt")
  good=$(submit "$DATA/phototest.tif" "format=txt,pdf")
  check "mount namespace: serve: reading /etc/passwd fails the task as sandbox_violation" \
    bash -c '[ "$1" = failed ] && [ "$2" = sandbox_violation ]' _ "$(wait_task "$bad" 120)" "$(reason "$bad")"
  check "mount namespace: serve: the real page beside it succeeds" test "$(wait_task "$good" 180)" = succeeded
  check "mount namespace: serve: its text is whole" \
    sh -c "curl -s '$BASE/v1/tasks/$good/result?format=txt' | grep -q 'quick brown'"
  check "mount namespace: /v1/memory says which layer is in force" python3 - "$BASE" <<'EOF'
import json, sys, urllib.request
workers = [w for w in json.load(urllib.request.urlopen(sys.argv[1] + "/v1/memory"))["workers"] if w["sandbox"]]
assert workers, "no worker"
for w in workers:
    assert w["sandbox"]["filesystem"] == "mount_namespace" and w["sandbox"]["landlock_abi"] == 0, w["sandbox"]
EOF
  check "mount namespace: the log says so once" test "$(grep -c 'a mount namespace of their paths only' "$TMP/server.log")" -eq 1
  stop_server
  unset OCRPOOL_SANDBOX_FS
else
  echo "note: not root: the mount namespace (the layer used where the kernel has no Landlock) is not tested"
fi

done_testing

#!/usr/bin/env bash
# systemd's notify protocol (issue 5): with NOTIFY_SOCKET set, as systemd sets
# it for Type=notify, the server says READY=1 once it listens, WATCHDOG=1 at
# half the WATCHDOG_USEC interval from its scheduler loop, and STOPPING=1 on
# SIGTERM. The socket is a real AF_UNIX datagram socket this test reads; only
# systemd itself is absent.
source "$(dirname "$0")/lib.sh"

if ! ldd "$OCRPOOL" | grep -q libsystemd; then
  echo "skipped: this build has no libsystemd (optional; make installs libsystemd-dev)"
  exit 77
fi
cat >"$TMP/listen.py" <<'PY'
# Collects the datagrams sent to the socket until told to stop (a file appears).
import os, socket, sys, time
path, out, stop = sys.argv[1:4]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
s.settimeout(0.1)
with open(out, "w") as f:
    while not os.path.exists(stop):
        try:
            msg = s.recv(4096).decode()
        except socket.timeout:
            continue
        f.write("%.3f %s\n" % (time.time(), msg.replace("\n", "|")))
        f.flush()
PY
python3 "$TMP/listen.py" "$TMP/notify.sock" "$TMP/notes" "$TMP/stop" &
LISTENER=$!
for _ in $(seq 1 50); do [ -S "$TMP/notify.sock" ] && break; sleep 0.1; done
NOTIFY_SOCKET=$TMP/notify.sock WATCHDOG_USEC=1000000 start_server "$TMP/var" --workers 1 || { done_testing; exit 1; }
check "READY=1 once listening, with a status line" wait_for 10 grep -q 'READY=1|STATUS=listening on port' "$TMP/notes"
watchdogs() { [ "$(grep -c 'WATCHDOG=1' "$TMP/notes")" -ge 3 ]; }
check "WATCHDOG=1 about every half second" wait_for 10 watchdogs
stop_server
check "STOPPING=1 on SIGTERM" wait_for 10 grep -q 'STOPPING=1' "$TMP/notes"
touch "$TMP/stop"
wait "$LISTENER"
check "READY came before STOPPING" python3 -c "
lines = open('$TMP/notes').read().splitlines()
r = [i for i, l in enumerate(lines) if 'READY=1' in l][0]
s = [i for i, l in enumerate(lines) if 'STOPPING=1' in l][0]
assert r < s, lines"
check "contrib/ocrpool.service is Type=notify with a watchdog and SIGHUP reload" \
  bash -c "grep -q '^Type=notify' contrib/ocrpool.service && grep -q '^WatchdogSec=' contrib/ocrpool.service && grep -q 'kill -HUP' contrib/ocrpool.service"
done_testing

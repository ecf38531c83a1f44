#!/usr/bin/env bash
# Hostile requests (issue 18): each fault a security review found by probing
# a running server, made again here by the test itself, and what the server
# must do instead: refuse with a clear 4xx, keep every reply valid JSON, and
# lose or block nothing that was accepted.
source "$(dirname "$0")/lib.sh"

python3 - "$TMP/tiny.png" <<'PY'
import struct, sys, zlib
raw = b"".join(b"\0" + b"\xff" * 8 for _ in range(8))
chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
open(sys.argv[1], "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 0, 0, 0, 0))
                              + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
PY

# raw PORT FILE: sends FILE's bytes as they are on one connection, prints what
# came back (the connection closed, or "<open>" after 5 s of silence).
raw() {
  python3 - "$1" "$2" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.settimeout(5)
s.sendall(open(sys.argv[2], "rb").read())
out = b""
try:
    while True:
        d = s.recv(65536)
        if not d:
            break
        out += d
except socket.timeout:
    out += b"<open>"
sys.stdout.write(out.decode("utf-8", "replace"))
PY
}
port() { echo "${BASE##*:}"; }
json_field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
export -f json_field

# ---- 9. settings out of range are refused, never wrapped in 32 bits ----
# 49,711 days of retention would wrap to 17.5 hours, a page timeout of
# 4,294,968 s to 0.7 s: each must be refused, as a flag, in the file and from the environment.
refused() { # WHAT PATTERN COMMAND...: the command exits 2 and says PATTERN
  local what=$1 pattern=$2
  shift 2
  "$@" >"$TMP/out9" 2>&1
  local rc=$?
  check "9: $what is refused (exit $rc)" test "$rc" -eq 2
  check "9: ... saying \"$pattern\"" grep -q -- "$pattern" "$TMP/out9" || cat "$TMP/out9"
}
refused "--retention-days 49711" "from 0 to 36500" "$OCRPOOL" serve --data-dir "$TMP/never" --retention-days 49711
refused "--page-timeout 4294968" "from 1 to 86400" "$OCRPOOL" serve --data-dir "$TMP/never" --page-timeout 4294968
printf 'server:\n  page_timeout: 4294968s\n' >"$TMP/timeout.yaml"
refused "server.page_timeout: 4294968s" "at most 86400s" "$OCRPOOL" serve --data-dir "$TMP/never" --config "$TMP/timeout.yaml"
refused "OCRPOOL_SERVER_RETENTION_DAYS=49711" "up to 36500" \
  env OCRPOOL_SERVER_RETENTION_DAYS=49711 "$OCRPOOL" serve --data-dir "$TMP/never"
check "9: no server started on any of them" test ! -e "$TMP/never"

# ---- 4. a PDF page whose drawing never ends is refused, not run to its timeout twice ----
# 2 KB of nested forms, each drawing the next ten times, eight deep: 10^8
# strokes. Its render is stopped at its CPU cap (2 s here, set low so that a
# worker starved of CPU by a loaded machine still reaches it long before the
# wall-clock page timeout of 120 s).
pdf() { PYTHONPATH="$(dirname "$0")" PYTHONDONTWRITEBYTECODE=1 python3 - "$@"; } # PATH <<SCRIPT: the script has tests/pdfgen.py
pdf "$TMP/fanout.pdf" <<'PY'
import sys
from pdfgen import stream, write
levels, first = 8, 5
objs = {1: b"<< /Type /Catalog /Pages 2 0 R >>", 2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        3: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Contents 4 0 R /Resources << /XObject << /X %d 0 R >> >> >>" % first}
objs[4] = stream(b"<<", b"/X Do\n")
for i in range(levels):
    last = i + 1 == levels
    res = b"" if last else b" /Resources << /XObject << /X %d 0 R >> >>" % (first + i + 1)
    objs[first + i] = stream(b"<< /Type /XObject /Subtype /Form /BBox [0 0 200 200]" + res,
                             b"0 0 m 10 10 l S\n" if last else b"/X Do\n" * 10)
write(sys.argv[1], objs)
PY
run_ocr "$TMP/fanout.txt" "$TMP/fanout.err" "$TMP/fanout.pdf" --engine null --page-timeout 120 --render-cpu 2 -j 1
check "4: a page of nested forms is bad input (exit 3), not a timeout" test "$RC" -eq 3 || cat "$TMP/fanout.err"
check "4: ... stopped at its CPU cap, saying so" grep -q 'drawing it took over 2.0 s of CPU' "$TMP/fanout.err"
check "4: ... and not run again" bash -c "! grep -q 'running it again' '$TMP/fanout.err'"

# ---- 4. a PDF page that needs far more memory than its size explains is refused by MuPDF's allocator ----
# 230 KB of Flate holding one path of 20 million segments on a 200 pt page:
# 180 MB of path for 0.7 MP. Without the cap it is drawn until the page
# timeout kills it, twice (about 10 minutes of CPU at the defaults).
pdf "$TMP/path.pdf" <<'PY'
import sys, zlib
from pdfgen import stream, write
body = zlib.compress(b"0 0 m\n" + b"1 1 l\n0 0 l\n" * 10000000 + b"S\n", 9)
write(sys.argv[1], {1: b"<< /Type /Catalog /Pages 2 0 R >>", 2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                    3: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Contents 4 0 R >>",
                    4: stream(b"<< /Filter /FlateDecode", body)})
PY
run_ocr "$TMP/path.txt" "$TMP/path.err" "$TMP/path.pdf" --engine null -j 1
check "4: a page of a 20-million-segment path is bad input (exit 3) at the default cap" test "$RC" -eq 3 \
  || cat "$TMP/path.err"
check "4: ... refused by the allocator, saying which setting" \
  grep -q 'needs more than 128 MB beyond what its 834x834 pixels explain.*server.render_memory' "$TMP/path.err"
check "4: ... and not run again" bash -c "! grep -q 'running it again' '$TMP/path.err'"
# A real 9000x9000 RGB scan (81 MP, 30 inches square) needs about 4 bytes a
# pixel: what its size explains, so the default cap never refuses it.
run_ocr "$TMP/enormous.txt" "$TMP/enormous.err" "$DATA/multipage.pdf" --engine null -j 2 -q
check "4: a real 6-page PDF with an 81 MP page renders whole under the default cap" test "$RC" -eq 0 \
  || cat "$TMP/enormous.err"

start_server "$TMP/data" --workers 1 --max-queue 5 || { done_testing; exit 1; }

path_id=$(submit "$TMP/path.pdf" "engine=null")
check "4: over HTTP the 20-million-segment path fails" test "$(wait_task "$path_id" 120)" = failed
curl -s "$BASE/v1/tasks/$path_id" >"$TMP/path.json"
check "4: ... as bad input, at the allocator's cap" \
  bash -c "[ \"\$(json_field failure_reason <'$TMP/path.json')\" = bad_input ] && grep -q 'server.render_memory' '$TMP/path.json'" \
  || cat "$TMP/path.json"

# ---- 1. option values that cannot be stored whole are refused, never cut ----
long_pages="1$(printf '%%20%.0s' $(seq 1 1100))"
for i in 1 2 3 4 5 6; do
  code=$(curl -s -o "$TMP/long.json" -w '%{http_code}' --data-binary @"$TMP/tiny.png" "$BASE/v1/tasks?engine=null&pages=$long_pages")
  [ "$code" = 400 ] || break
done
check "1: a pages value of 1101 characters is refused with 400, six times" test "$code" = 400
check "1: ... and the answer says why" grep -q "over the limit" "$TMP/long.json"
id=$(submit "$TMP/tiny.png" "engine=null")
check "1: after them a submission is still accepted (the queue did not fill)" test -n "$id"
check "1: ... and succeeds" test "$(wait_task "$id")" = succeeded

# ---- 2. bytes that are not UTF-8 never make a reply vanish ----
code=$(curl -s -o "$TMP/name.json" -w '%{http_code}' --data-binary @"$TMP/tiny.png" "$BASE/v1/tasks?engine=null&name=%ff%fe.png")
check "2: ?name=%ff%fe.png is accepted with a JSON reply" test "$code" = 202
id=$(json_field id <"$TMP/name.json" 2>/dev/null)
check "2: ... the stored title has U+FFFD for each bad byte" \
  test "$(json_field title <"$TMP/name.json" 2>/dev/null)" = $'\uFFFD\uFFFD.png'
check "2: ... the task succeeds" test "$(wait_task "$id")" = succeeded
check "2: ... GET /v1/tasks/ID answers it" http_code_is "$BASE/v1/tasks/$id" 200
check "2: ... and the list shows it" bash -c "curl -s '$BASE/v1/tasks' | grep -q '\"$id\"'"
code=$(curl -s -o "$TMP/form.json" -w '%{http_code}' -F "file=@$TMP/tiny.png;filename=$(printf '\xff\xfe')" "$BASE/v1/tasks?engine=null")
check "2: a multipart filename of \\xff\\xfe is accepted with a JSON reply" \
  bash -c "[ $code = 202 ] && python3 -c 'import json,sys; json.load(sys.stdin)' <'$TMP/form.json'"
check "2: ... and succeeds" test "$(wait_task "$(json_field id <"$TMP/form.json")")" = succeeded
code=$(curl -s -o "$TMP/lang.json" -w '%{http_code}' --data-binary @"$TMP/tiny.png" "$BASE/v1/tasks?engine=null&lang=%ff")
check "2: lang=%ff is a bad option (400, JSON), not silently dropped" \
  bash -c "[ $code = 400 ] && grep -q 'bad lang' '$TMP/lang.json'"
code=$(curl -s -o "$TMP/id.json" -w '%{http_code}' "$BASE/v1/tasks/%ff")
check "2: GET /v1/tasks/%ff answers 404 with problem+json" \
  bash -c "[ $code = 404 ] && python3 -c 'import json,sys; json.load(sys.stdin)' <'$TMP/id.json'"
# A PDF whose encryption filter's name is the bytes FF FE: MuPDF quotes it in
# its message. The worker must still answer, so the task fails at once as bad
# input instead of burning page timeouts.
pdf "$TMP/badfilter.pdf" <<'PY'
import sys
from pdfgen import write
write(sys.argv[1], {1: b"<< /Type /Catalog /Pages 2 0 R >>", 2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                    3: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
                    4: b"<< /Filter /#FF#FEbad /V 1 /R 2 /O (x) /U (x) /P -4 >>"},
      b" /Encrypt 4 0 R /ID [(a)(a)]")
PY
cut_id=$(submit "$TMP/badfilter.pdf" "engine=null") # section 1 below rewrites its stored options
check "2: a PDF whose filter name is FF FE fails (not times out)" test "$(wait_task "$cut_id" 60)" = failed
curl -s "$BASE/v1/tasks/$cut_id" >"$TMP/badfilter.json"
check "2: ... as bad input, with MuPDF's message made valid UTF-8" \
  bash -c "[ \"\$(json_field failure_reason <'$TMP/badfilter.json')\" = bad_input ] && grep -q 'encryption' '$TMP/badfilter.json'" \
  || cat "$TMP/badfilter.json"

# ---- 6. framing a proxy could read differently is refused, and the connection closed ----
printf 'POST /v1/tasks?engine=null HTTP/1.1\r\nHost: x\r\nContent-Length: 45\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n' >"$TMP/smuggle"
raw "$(port)" "$TMP/smuggle" >"$TMP/smuggle.out"
check "6: Content-Length with Transfer-Encoding: 400" grep -q '^HTTP/1.1 400' "$TMP/smuggle.out"
check "6: ... the smuggled GET is not answered, the connection is closed" \
  bash -c "[ \$(grep -c '^HTTP/1.1' '$TMP/smuggle.out') = 1 ] && ! grep -q '<open>' '$TMP/smuggle.out'"
{ printf 'POST /v1/tasks?engine=null HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nContent-Length: 5\r\n\r\n' \
  "$(stat -c %s "$TMP/tiny.png")"; cat "$TMP/tiny.png"; } >"$TMP/twolengths"
raw "$(port)" "$TMP/twolengths" >"$TMP/twolengths.out"
check "6: two different Content-Length headers: 400, connection closed" \
  bash -c "grep -q '^HTTP/1.1 400' '$TMP/twolengths.out' && ! grep -q '<open>' '$TMP/twolengths.out'"

# ---- 7. multipart bodies are taken only whole and with one file ----
form() { # FILE_PARTS CLOSED: a form of FILE_PARTS "file" parts, with or without its closing boundary
  local body="$TMP/form.body" i
  : >"$body"
  for i in $(seq 1 "$1"); do
    printf -- '--XYZ\r\nContent-Disposition: form-data; name="file"; filename="p%d.png"\r\nContent-Type: image/png\r\n\r\n' "$i" >>"$body"
    cat "$TMP/tiny.png" >>"$body"
    printf '\r\n' >>"$body"
  done
  [ "$2" = 0 ] || printf -- '--XYZ--\r\n' >>"$body"
  curl -s -o "$TMP/form.json" -w '%{http_code}' -H 'Content-Type: multipart/form-data; boundary=XYZ' \
    --data-binary @"$body" "$BASE/v1/tasks?engine=null"
}
before=$(db "$TMP/data" "SELECT count(*) FROM tasks")
check "7: two \"file\" parts: 400" test "$(form 2 1)" = 400
check "7: ... saying so" grep -q 'more than one' "$TMP/form.json"
check "7: a form without its closing boundary: 400" test "$(form 1 0)" = 400
check "7: ... saying so" grep -q 'closing boundary' "$TMP/form.json"
check "7: neither became a task" test "$(db "$TMP/data" "SELECT count(*) FROM tasks")" = "$before"
check "7: one file with its closing boundary is accepted" test "$(form 1 1)" = 202
check "7: ... and succeeds" test "$(wait_task "$(json_field id <"$TMP/form.json")")" = succeeded

# ---- 5. slow uploads hold their queue slots from their headers on ----
# Five uploads (the --max-queue) send their headers and part of their body
# and wait; a sixth is refused at once, the five then finish and are taken.
uploads_in_progress() { [ "$(curl -s "$BASE/metrics" | sed -n 's/^ocrpool_uploads_in_progress //p')" = "$1" ]; }
python3 - "$(port)" "$TMP/tiny.png" "$TMP/slow" <<'PY' &
import os, socket, sys, time
port, png, fifo = int(sys.argv[1]), open(sys.argv[2], "rb").read(), sys.argv[3]
def head(extra=b""):
    return b"POST /v1/tasks?engine=null HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n%s\r\n" % (len(png), extra)
def answer(s):
    out = b""
    while b"\r\n\r\n" not in out:
        d = s.recv(4096)
        if not d:
            break
        out += d
    return out.split(b" ")[1].decode() if out else "none"
slow = []
for _ in range(5):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(head() + png[:10])
    slow.append(s)
open(fifo + ".sent", "w").close()
while not os.path.exists(fifo + ".go"):  # the test saw the five slots taken
    time.sleep(0.02)
s = socket.create_connection(("127.0.0.1", port))
s.sendall(head(b"Connection: close\r\n") + png)
codes = [answer(s)]
for s in slow:
    s.sendall(png[10:])
    codes.append(answer(s))
open(fifo + ".codes", "w").write(" ".join(codes))
PY
slow_pid=$!
wait_for 30 test -e "$TMP/slow.sent"
check "5: five slow uploads hold five slots" wait_for 30 uploads_in_progress 5
: >"$TMP/slow.go"
wait "$slow_pid"
check "5: the sixth upload is refused with 429, the five are then accepted" \
  test "$(cat "$TMP/slow.codes" 2>/dev/null)" = "429 202 202 202 202 202" || cat "$TMP/slow.codes"
check "5: no slot is held after them" wait_for 10 uploads_in_progress 0

# ---- 11. libmicrohttpd's own messages go through the logger, rate-limited ----
python3 - "$(port)" <<'PY'
import socket, sys
for _ in range(60):  # uploads cut short: libmicrohttpd reports each one
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    s.sendall(b"POST /v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nabc")
    s.close()
PY
wait_for 10 grep -q 'http: Connection was closed' "$TMP/server.log"
check "11: libmicrohttpd's messages are logged as logfmt lines" grep -q 'level=warn .*msg="http: ' "$TMP/server.log"
check "11: every line the server wrote is logfmt (none raw)" bash -c "! grep -v '^time=' '$TMP/server.log'"
check "11: at most 20 of them a minute (60 cut uploads, within two minutes at worst)" \
  test "$(grep -c 'msg="http: Connection was closed' "$TMP/server.log")" -le 40

stop_server

# ---- 5. uploads stop short of filling the disk ----
start_server "$TMP/data" --workers 1 --min-free-space 1000000G || { done_testing; exit 1; }
before=$(db "$TMP/data" "SELECT count(*) FROM tasks")
code=$(curl -s -o "$TMP/full.json" -w '%{http_code}' --data-binary @"$TMP/tiny.png" "$BASE/v1/tasks?engine=null")
check "5: below --min-free-space an upload gets 507" test "$code" = 507
check "5: ... saying the disk is nearly full" grep -q 'nearly full' "$TMP/full.json"
check "5: ... and nothing was recorded" test "$(db "$TMP/data" "SELECT count(*) FROM tasks")" = "$before"
stop_server

# ---- 8. auth hygiene ----
cat >"$TMP/tokens" <<'TOK'
alice-0123456789abcdef0123456789 submit alice
bob-0123456789abcdef0123456789ab submit bob
root-0123456789abcdef0123456789a admin ops
erin-0123456789abcdef0123456789a submit erin max_tasks=1 max_pages=2 max_bytes=2M
fred-0123456789abcdef0123456789a submit fred rate=10/min burst=2
TOK
chmod 644 "$TMP/tokens"
A=(-H "Authorization: Bearer alice-0123456789abcdef0123456789")
B=(-H "Authorization: Bearer bob-0123456789abcdef0123456789ab")
R=(-H "Authorization: Bearer root-0123456789abcdef0123456789a")
export OCRPOOL_NULL_OPTS=sleep_ms=2000 # erin's task is still running when she submits again
start_server "$TMP/auth" --workers 1 --tokens "$TMP/tokens" || { done_testing; exit 1; }
unset OCRPOOL_NULL_OPTS
check "8: a tokens file every user can read is warned about" grep -q 'tokens file .* can be read by every user' "$TMP/server.log"
AUTH=("${A[@]}")
aid=$(submit "$TMP/tiny.png" "engine=null")
check "8: alice's task succeeds" test "$(wait_task "$aid")" = succeeded
AUTH=() # each request below names its token
other=$(curl -s -w ' %{http_code}' "${B[@]}" "$BASE/v1/tasks?after=$aid")
unknown=$(curl -s -w ' %{http_code}' "${B[@]}" "$BASE/v1/tasks?after=00000000000000000000000000000000")
check "8: after=<another tenant's id> answers as an unknown id does (400)" \
  bash -c "[ \"\$1\" = \"\$2\" ] && [ \"\${1##* }\" = 400 ]" _ "$other" "$unknown" || echo "$other / $unknown"
check "8: the admin sees worker pids in /v1/memory" \
  wait_for 30 bash -c "curl -s ${R[*]@Q} '$BASE/v1/memory' | grep -q '\"pid\"'"
curl -s "${A[@]}" "$BASE/v1/memory" >"$TMP/mem.json"
check "8: a submit token sees the workers' states, without pids or memory" \
  bash -c "grep -q '\"state\"' '$TMP/mem.json' && ! grep -q '\"pid\"\|\"used_bytes\":[0-9]*,\"reserved_bytes\":[0-9]*,\"models\"' '$TMP/mem.json'"
check "8: memory reports need an admin token (403)" http_code_is "$BASE/v1/memory/reports" 403 "${A[@]}"
# Revoking bob: his line goes, SIGHUP, and his next request is refused.
grep -v '^bob' "$TMP/tokens" >"$TMP/tokens.new" && mv "$TMP/tokens.new" "$TMP/tokens"
check "8: before the reload bob's token works" http_code_is "$BASE/v1/tasks" 200 "${B[@]}"
kill -HUP "$SERVER_PID"
bob_refused() { http_code_is "$BASE/v1/tasks" 401 "${B[@]}"; }
check "8: after SIGHUP bob's revoked token gets 401" wait_for 30 bob_refused
check "8: ... while alice's still works" http_code_is "$BASE/v1/tasks" 200 "${A[@]}"

# ---- 4. per-token quotas: bytes per upload, pages per document, unfinished tasks ----
E=(-H "Authorization: Bearer erin-0123456789abcdef0123456789a")
head -c 3000000 /dev/zero >"$TMP/3m.bin"
check "4: an upload over the token's max_bytes gets 413 naming the quota" \
  bash -c "curl -s -o '$TMP/q.json' -w '%{http_code}' ${E[*]@Q} --data-binary @'$TMP/3m.bin' '$BASE/v1/tasks?engine=null' |
    grep -qx 413 && grep -q 'quota' '$TMP/q.json'"
AUTH=("${E[@]}")
eid=$(submit "$DATA/multipage.pdf" "engine=null")
check "4: a 6-page PDF against the token's max_pages=2 fails as bad input" test "$(wait_task "$eid" 60)" = failed
check "4: ... saying the limit" bash -c "curl -s ${E[*]@Q} '$BASE/v1/tasks/$eid' | grep -q 'over the limit of 2'"
eid=$(submit "$TMP/tiny.png" "engine=null")
check "4: with one task unfinished (max_tasks=1) ..." test -n "$eid"
code=$(curl -s -o "$TMP/q.json" -w '%{http_code}' "${E[@]}" --data-binary @"$TMP/tiny.png" "$BASE/v1/tasks?engine=null")
check "4: ... the token's next submission gets 429 naming the quota" \
  bash -c "[ $code = 429 ] && grep -q 'quota of 1 unfinished' '$TMP/q.json'" || cat "$TMP/q.json"
check "4: ... and once it ends, the next is taken" test "$(wait_task "$eid" 60)" = succeeded
check "4: ... (202)" test -n "$(submit "$TMP/tiny.png" "engine=null")"
AUTH=()

# ---- 12. a request rate per token: 429 with Retry-After, before any body ----
F=(-H "Authorization: Bearer fred-0123456789abcdef0123456789a")
fred_code() { curl -s -o /dev/null -w '%{http_code}' "${F[@]}" "$BASE/v1/tasks"; }
check "12: fred's first two requests pass (burst=2)" test "$(fred_code) $(fred_code)" = "200 200"
before=$(db "$TMP/auth" "SELECT count(*) FROM tasks")
code=$(curl -s -D "$TMP/rate.h" -o "$TMP/rate.json" -w '%{http_code}' "${F[@]}" --data-binary @"$TMP/tiny.png" \
  "$BASE/v1/tasks?engine=null")
retry=$(tr -d '\r' <"$TMP/rate.h" | sed -n 's/^Retry-After: *//Ip')
check "12: his third, an upload, gets 429 naming the rate" \
  bash -c "[ $code = 429 ] && grep -q 'rate of 0.1667 requests a second' '$TMP/rate.json'" || cat "$TMP/rate.json"
check "12: ... with a Retry-After of 1 to 6 s (10 a minute, 2 at once)" test "${retry:-0}" -ge 1 -a "${retry:-0}" -le 6
check "12: ... and the upload became no task" test "$(db "$TMP/auth" "SELECT count(*) FROM tasks")" = "$before"
check "12: alice's token is not slowed by fred's" http_code_is "$BASE/v1/tasks" 200 "${A[@]}"
check "12: /healthz needs no token and counts against none" http_code_is "$BASE/healthz" 200
fred_again() { [ "$(fred_code)" = 200 ]; }
check "12: once the rate allows, fred's requests pass again" wait_for 30 fred_again
stop_server

# ---- 3. idle connections cannot shut out probes or hold threads ----
export OCRPOOL_NULL_OPTS=sleep_ms=60000 # pages that outlast the waiters below
start_server "$TMP/conn" --workers 1 --max-connections-per-client 8 --health-listen 127.0.0.1:0 --drain-timeout 1 ||
  { done_testing; exit 1; }
unset OCRPOOL_NULL_OPTS
health=$(sed -n 's/.*health listener on port \([0-9]*\).*/\1/p' "$TMP/server.log" | tail -1)
check "3: the health listener's port is logged" test -n "$health"
connections() { curl -s "http://127.0.0.1:$health/metrics" | sed -n 's/^ocrpool_http_connections //p'; }
# Eight idle connections (the cap from one address); a ninth is turned away,
# probes still answer on the health listener, and the eight are closed when
# they send no request within the header deadline.
python3 - "$(port)" "$health" >"$TMP/idle.out" <<'PY'
import socket, sys, time, urllib.request
port, health = int(sys.argv[1]), int(sys.argv[2])
idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(8)]
def closed(s, wait):
    s.settimeout(wait)
    try:
        return s.recv(1) == b""
    except socket.timeout:
        return False
    except OSError:
        return True
ninth = socket.create_connection(("127.0.0.1", port))
ninth.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
print("ninth", "refused" if closed(ninth, 10) else "served")
with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % health, timeout=10) as r:
    print("probe", r.status)
try:
    urllib.request.urlopen("http://127.0.0.1:%d/v1/tasks" % health, timeout=10)
    print("api served")
except urllib.error.HTTPError as e:
    print("api", e.code)
print("idle", "closed" if all(closed(s, 60) for s in idle) else "open")
PY
check "3: a ninth connection from the same address is turned away" grep -qx 'ninth refused' "$TMP/idle.out"
check "3: the health listener answers /healthz meanwhile" grep -qx 'probe 200' "$TMP/idle.out"
check "3: ... and nothing but health (404 for /v1/tasks)" grep -qx 'api 404' "$TMP/idle.out"
check "3: idle connections are closed at the header deadline" grep -qx 'idle closed' "$TMP/idle.out" || cat "$TMP/idle.out"
# Waiters on POST /v1/ocr that leave: their threads are let go at once.
waiters=()
for _ in 1 2 3; do
  curl -s -o /dev/null --max-time 2 --data-binary @"$TMP/tiny.png" "$BASE/v1/ocr?engine=null&timeout=600" &
  waiters+=($!)
done
wait "${waiters[@]}" # (not the server, also a child)
few_connections() { [ "$(connections)" = 0 ]; }
check "3: waiters that left hold no connection (ocrpool_http_connections 0)" wait_for 30 few_connections ||
  connections
stop_server

# ---- 4. one small file cannot cost hours: the task's CPU budget ----
# Six pages of 1.5 s each against a budget of 2 s: the task fails once its
# page runs add up past it, its other pages not run.
export OCRPOOL_NULL_OPTS=sleep_ms=1500
start_server "$TMP/budget" --workers 1 --task-cpu-budget 2 || { done_testing; exit 1; }
unset OCRPOOL_NULL_OPTS
bid=$(submit "$DATA/multipage.pdf" "engine=null")
check "4: a task past --task-cpu-budget fails" test "$(wait_task "$bid" 120)" = failed
curl -s "$BASE/v1/tasks/$bid" >"$TMP/budget.json"
check "4: ... as a timeout naming the budget, before its six pages all ran" \
  python3 -c 'import json,sys; t=json.load(open(sys.argv[1])); sys.exit(not (t["failure_reason"] == "timeout" and "task_cpu_budget" in t["error"] and t["pages_done"] < 6))' \
  "$TMP/budget.json" || cat "$TMP/budget.json"
stop_server

# ---- 1. a stored task whose options no longer read fails with a reason ----
# (a row written by an older version, or cut by hand): it must not stay queued
# for ever, holding a queue slot.
db "$TMP/data" "UPDATE tasks SET status = 'queued', started_at = 0, finished_at = 0, pages_done = 0, node_id = '', lease_until = 0,
  options = '{\"format\":\"txt\",\"engine\":\"null\",\"pages\":\"1' WHERE id = '$cut_id'" >/dev/null
start_server "$TMP/data" --workers 1 || { done_testing; exit 1; }
check "1: a stored task whose options are cut JSON fails" test "$(wait_task "$cut_id" 30)" = failed
curl -s "$BASE/v1/tasks/$cut_id" >"$TMP/cut.json"
check "1: ... as bad options, saying its options cannot be read" \
  bash -c "[ \"\$(json_field failure_reason <'$TMP/cut.json')\" = bad_options ] && grep -q 'options cannot be read' '$TMP/cut.json'" \
  || cat "$TMP/cut.json"
stop_server

done_testing

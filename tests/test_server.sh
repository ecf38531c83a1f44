#!/usr/bin/env bash
# `ocrpool serve` on loopback: results equal to `ocrpool ocr`, every format with
# its Content-Type, a worker killed mid-page, cancellation, bad requests with
# problem+json answers, and the OpenAPI document covering every route.
source "$(dirname "$0")/lib.sh"

# The null engine's pages take 3 s here on their first attempt (a retry takes
# none), so there is time to kill and cancel once a page is seen running.
export OCRPOOL_NULL_OPTS=sleep_ms=3000,sleep_attempts=1
start_server "$TMP/var" --workers 2 --max-input-size 2M || { done_testing; exit 1; }

# 1. Every page and PDF: the txt result equals `ocrpool ocr` on the same file.
# (The two 81-megapixel pages are left to the benchmark: a minute and 1.3 GB
# each. invalid.pdf and encrypted.pdf are bad input, tested below and in
# test_bad_input.)
files=()
for f in "$DATA"/*.tif "$DATA"/*.png "$DATA"/*.pdf; do
  case $(basename "$f") in enormous* | multipage.pdf | invalid.pdf | encrypted.pdf) continue ;; esac
  files+=("$f")
done
ids=()
for f in "${files[@]}"; do ids+=("$(submit "$f" "format=txt")"); done
"$OCRPOOL" ocr -q -j 2 -o "$TMP/want" -f txt "${files[@]}" 2>/dev/null
for i in "${!files[@]}"; do
  name=$(basename "${files[$i]}")
  status=$(wait_task "${ids[$i]}")
  curl -s "$BASE/v1/tasks/${ids[$i]}/result" -o "$TMP/got.txt"
  check "$name over HTTP: $status, same text as ocrpool ocr" \
    bash -c "[ '$status' = succeeded ] && cmp -s '$TMP/got.txt' '$TMP/want/${name%.*}.txt'"
done

# Every format, each with its Content-Type.
id=$(submit "$DATA/phototest.tif" "format=txt,hocr,tsv,alto,json,pdf")
check "all formats: succeeded" test "$(wait_task "$id")" = succeeded
for pair in txt:text/plain hocr:application/xhtml+xml tsv:text/tab-separated-values alto:application/xml \
  json:application/json pdf:application/pdf; do
  fmt=${pair%%:*}
  type=${pair#*:}
  got=$(curl -s -o "$TMP/r.$fmt" -w '%{http_code} %{content_type}' "$BASE/v1/tasks/$id/result?format=$fmt")
  check "result $fmt: 200 $type" bash -c "[[ '$got' == '200 $type'* ]] && [ -s '$TMP/r.$fmt' ]"
done
check "the pdf result holds the text" bash -c "pdftotext '$TMP/r.pdf' - | grep -q 'quick brown'"

# Multipart upload with options as form fields, and the synchronous route.
got=$(curl -s -w '\n%{http_code}' -F "file=@$DATA/HelloGoogle.tif" -F "format=json" "$BASE/v1/tasks")
check "multipart upload: 202" test "$(echo "$got" | tail -1)" = 202
mid=$(echo "$got" | head -1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
check "a format not asked for is 404" test "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/v1/tasks/$mid/result?format=pdf")" = 404
check "multipart upload: title from the file name" bash -c "curl -s '$BASE/v1/tasks/$mid' | grep -q HelloGoogle.tif"
status=$(wait_task "$mid")
check "multipart upload: json result" bash -c "[ '$status' = succeeded ] && curl -s '$BASE/v1/tasks/$mid/result' | python3 -c 'import json,sys; assert \"Google\" in json.load(sys.stdin)[\"pages\"][0][\"text\"]'"
curl -s -X POST --data-binary "@$DATA/phototest.tif" "$BASE/v1/ocr" -o "$TMP/sync.txt"
check "POST /v1/ocr answers the text itself" grep -q 'quick brown' "$TMP/sync.txt"

# 4. A worker killed mid-page: the task completes, with a "retried" event.
qpdf --empty --pages "$DATA/linn.pdf" "$DATA/linn.pdf" -- "$TMP/two.pdf"
id=$(submit "$TMP/two.pdf" "engine=null")
check "a page of the two starts" wait_started "$id"
for pid in $(pgrep -P "$SERVER_PID"); do kill -KILL "$pid"; done
check "after its workers were killed mid-page, the task succeeds" test "$(wait_task "$id")" = succeeded
check "the retry is in the task's events" bash -c "curl -s '$BASE/v1/tasks/$id/events' | grep -q '\"retried\"'"

# 7. Cancel a running 6-page task: cancelled, its pages stop, its scratch files are gone.
qpdf --empty --pages "$DATA/linn.pdf" "$DATA/linn.pdf" "$DATA/linn.pdf" "$DATA/linn.pdf" "$DATA/linn.pdf" \
  "$DATA/linn.pdf" -- "$TMP/six.pdf"
id=$(submit "$TMP/six.pdf" "engine=null")
check "a page of the six starts" wait_started "$id"
got=$(curl -s -X DELETE "$BASE/v1/tasks/$id")
check "DELETE answers the task as cancelled" bash -c "echo '$got' | grep -q '\"status\":\"cancelled\"'"
check "the scheduler ends it: cleanup_completed" wait_for 30 has_event "$id" cleanup_completed
check "it stays cancelled, with pages left undone" python3 -c "
import json,urllib.request
t=json.load(urllib.request.urlopen('$BASE/v1/tasks/$id'))
assert t['status']=='cancelled' and t['pages_done']<6 and t['failure_reason']=='cancelled', t"
check "its page fragments are gone" test -z "$(ls "$TMP/var/tasks/$id" | grep '^p[0-9]')"
check "cancelling it again is 409" test "$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "$BASE/v1/tasks/$id")" = 409

# 5. Bad requests: the right status, a problem+json body, and the server keeps serving.
expect_problem() { # NAME STATUS CURL-ARGS...
  local name=$1 want=$2
  shift 2
  local got
  got=$(curl -s -o "$TMP/p.json" -w '%{http_code} %{content_type}' "$@")
  check "$name: $want problem+json" bash -c "[[ '$got' == '$want application/problem+json'* ]] && python3 -c 'import json; d=json.load(open(\"$TMP/p.json\")); assert d[\"status\"]==$want and d[\"detail\"]'"
}
expect_problem "unsupported type" 415 -X POST --data-binary "@$DATA/MANIFEST.md" "$BASE/v1/tasks"
head -c 3000000 /dev/zero >"$TMP/big.bin"
expect_problem "over-size body" 413 -X POST --data-binary "@$TMP/big.bin" "$BASE/v1/tasks"
expect_problem "bad psm" 400 -X POST --data-binary "@$DATA/phototest.tif" "$BASE/v1/tasks?psm=99"
expect_problem "unknown format" 400 -X POST --data-binary "@$DATA/phototest.tif" "$BASE/v1/tasks?format=docx"
expect_problem "unknown option" 400 -X POST --data-binary "@$DATA/phototest.tif" "$BASE/v1/tasks?colour=blue"
expect_problem "unknown id" 404 "$BASE/v1/tasks/0123456789abcdef0123456789abcdef"
expect_problem "unknown route" 404 "$BASE/v2/nothing"
expect_problem "unknown sub-route of a task" 404 "$BASE/v1/tasks/0123456789abcdef0123456789abcdef/nothing"
# A known path with another method: 405 naming the methods it has.
expect_problem "PUT on a task" 405 -X PUT "$BASE/v1/tasks/0123456789abcdef0123456789abcdef"
check "... with Allow: GET, HEAD, DELETE" bash -c "curl -s -o /dev/null -D - -X PUT '$BASE/v1/tasks/x' | tr -d '\r' | grep -qx 'Allow: GET, HEAD, DELETE'"
expect_problem "DELETE on /v1/tasks" 405 -X DELETE "$BASE/v1/tasks"
check "... with Allow: GET, HEAD, POST" bash -c "curl -s -o /dev/null -D - -X DELETE '$BASE/v1/tasks' | tr -d '\r' | grep -qx 'Allow: GET, HEAD, POST'"
expect_problem "GET on /v1/ocr" 405 "$BASE/v1/ocr"
check "HEAD /healthz is 200" test "$(curl -s -o /dev/null -w '%{http_code}' -I "$BASE/healthz")" = 200
expect_problem "malformed multipart" 400 -X POST -H 'Content-Type: multipart/form-data; boundary=xyz' \
  --data-binary 'this is not multipart at all' "$BASE/v1/tasks"
python3 - "$TMP/huge.png" <<'PY'
import struct, sys, zlib
ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
open(sys.argv[1], "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))
PY
expect_problem "a pixel bomb through /v1/ocr" 422 -X POST --data-binary "@$TMP/huge.png" "$BASE/v1/ocr"
check "the pixel bomb's problem names the size" grep -q '100000x100000' "$TMP/p.json"
id=$(submit "$TMP/huge.png" "")
status=$(wait_task "$id")
check "a pixel bomb as a task: failed, bad_input" bash -c "[ '$status' = failed ] && curl -s '$BASE/v1/tasks/$id' | grep -q '\"failure_reason\":\"bad_input\"'"
id=$(submit "$TMP/six.pdf" "engine=null")
check "a result before the end is 409" test "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/v1/tasks/$id/result")" = 409
check "the server still serves" curl -fs -o /dev/null "$BASE/healthz"

# The OpenAPI document lists every route the server answers.
curl -s "$BASE/openapi.json" -o "$TMP/openapi.json"
check "openapi.json lists every route" python3 -c "
import json
paths=json.load(open('$TMP/openapi.json'))['paths']
routes={('/v1/tasks','post'),('/v1/tasks','get'),('/v1/tasks/{id}','get'),('/v1/tasks/{id}','delete'),
        ('/v1/tasks/{id}/result','get'),('/v1/tasks/{id}/events','get'),('/v1/ocr','post'),('/v1/memory','get'),('/v1/models','get'),
        ('/v1/models/{name}/load','post'),('/v1/models/{name}/unload','post'),('/v1/memory/report','post'),
        ('/v1/memory/reports','get'),('/v1/memory/reports/{name}','get'),
        ('/healthz','get'),('/readyz','get'),('/openapi.json','get'),('/metrics','get'),('/','get'),
        ('/v1/tasks/{id}/health','get'),('/v1/tasks/metrics','get'),('/v1/nodes','get')}
missing=[r for r in routes if r[1] not in paths.get(r[0],{})]
assert not missing, missing
assert all(p in {r[0] for r in routes} for p in paths), paths.keys()"
# ... and the server answers each of them (no 404 for the route itself).
for route in "GET /healthz" "GET /readyz" "GET /openapi.json" "GET /metrics" "GET /" "GET /v1/tasks" "GET /v1/tasks/$mid" \
  "GET /v1/tasks/$mid/result" "GET /v1/tasks/$mid/events" "GET /v1/memory" "GET /v1/models" \
  "GET /v1/memory/reports" "GET /v1/tasks/metrics" "GET /v1/tasks/$mid/health" "GET /v1/nodes"; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -X "${route% *}" "$BASE${route#* }")
  check "$route answers 200" test "$code" = 200
done

stop_server
check "no stray worker after the server stopped" test -z "$(pgrep -P "$SERVER_PID" 2>/dev/null)"
done_testing

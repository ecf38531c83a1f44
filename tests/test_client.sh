#!/usr/bin/env bash
# `ocrpool submit` and `ocrpool status` against a real server: ids without
# --wait, results with --wait equal to `ocrpool ocr`, files into -o DIR, tokens
# from the environment, and clear exits when things go wrong.
source "$(dirname "$0")/lib.sh"

cat >"$TMP/tokens" <<'TOK'
client-token-0123456789abcdef submit me
TOK
start_server "$TMP/var" --workers 2 --tokens "$TMP/tokens" || { done_testing; exit 1; }
export OCRPOOL_SERVER=$BASE

"$OCRPOOL" submit "$DATA/phototest.tif" >"$TMP/out" 2>"$TMP/err"
check "without a token: exit 2" test $? -eq 2
check "... saying authentication failed" grep -qi 'token' "$TMP/err"

export OCRPOOL_TOKEN=client-token-0123456789abcdef
"$OCRPOOL" submit "$DATA/phototest.tif" "$DATA/HelloGoogle.tif" >"$TMP/ids" 2>"$TMP/err"
check "submit without --wait: exit 0" test $? -eq 0
check "... one ID<TAB>FILE line per file" test "$(grep -c "^[0-9a-f]\{32\}	" "$TMP/ids")" -eq 2

"$OCRPOOL" submit "$DATA/phototest.tif" --wait >"$TMP/got.txt" 2>"$TMP/err"
check "submit --wait: exit 0" test $? -eq 0
"$OCRPOOL" ocr -q "$DATA/phototest.tif" >"$TMP/want.txt" 2>/dev/null
check "submit --wait writes the same text as ocrpool ocr" cmp -s "$TMP/got.txt" "$TMP/want.txt"

"$OCRPOOL" submit "$DATA/phototest.tif" "$DATA/linn.pdf" --wait -f txt,pdf -o "$TMP/res" 2>"$TMP/err"
check "several files and formats with -o DIR: exit 0" test $? -eq 0
check "... phototest.txt and linn.pdf are there" test -s "$TMP/res/phototest.txt" -a -s "$TMP/res/linn.pdf"
check "... the pdf is searchable" bash -c "pdftotext '$TMP/res/linn.pdf' - | grep -qi linn"

"$OCRPOOL" submit "$DATA/MANIFEST.md" --wait >/dev/null 2>"$TMP/err"
check "an unsupported file: exit 3" test $? -eq 3
check "... with the server's sentence" grep -q 'unsupported type' "$TMP/err"
"$OCRPOOL" submit "$DATA/phototest.tif" --psm 99 >/dev/null 2>"$TMP/err"
check "bad options: exit 2" test $? -eq 2

"$OCRPOOL" status >"$TMP/list" 2>"$TMP/err"
check "status lists the tasks" test "$(grep -c '^[0-9a-f]\{32\} ' "$TMP/list")" -ge 4
id=$(head -1 "$TMP/ids" | cut -f1)
"$OCRPOOL" status "$id" >"$TMP/one" 2>"$TMP/err"
check "status ID prints the task" python3 -c "import json; t=json.load(open('$TMP/one')); assert t['id']=='$id'"
"$OCRPOOL" status 0123456789abcdef0123456789abcdef >/dev/null 2>&1
check "status of an unknown id: exit 2" test $? -eq 2
"$OCRPOOL" status --server http://127.0.0.1:9 >/dev/null 2>"$TMP/err"
check "no server: exit 1 with a message" bash -c "[ $? -eq 1 ] && grep -q 'cannot reach' '$TMP/err'"

stop_server
done_testing

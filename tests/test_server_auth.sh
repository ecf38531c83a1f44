#!/usr/bin/env bash
# Bearer tokens: no token is 401 with WWW-Authenticate; a task is visible only
# to the token that made it (404 to others, for reading and cancelling); an
# admin token sees all and alone loads and unloads models; health stays open.
source "$(dirname "$0")/lib.sh"

cat >"$TMP/tokens" <<'TOK'
# token                          scope   name
alice-0123456789abcdef0123456789 submit  alice
bob-0123456789abcdef0123456789ab submit  bob
root-0123456789abcdef0123456789a admin   ops
TOK
export OCRPOOL_NULL_OPTS=sleep_ms=60000 # the task runs until the admin cancels it, however slow the machine
printf 'models:\n  - name: fast\n    engine: null\n' >"$TMP/models.yaml"
start_server "$TMP/var" --workers 1 --tokens "$TMP/tokens" --config "$TMP/models.yaml" || { done_testing; exit 1; }
A=(-H "Authorization: Bearer alice-0123456789abcdef0123456789")
B=(-H "Authorization: Bearer bob-0123456789abcdef0123456789ab")
R=(-H "Authorization: Bearer root-0123456789abcdef0123456789a")

code() { curl -s -o "$TMP/body" -w '%{http_code}' "$@"; }
check "no token: 401" test "$(code -X POST --data-binary "@$DATA/phototest.tif" "$BASE/v1/tasks")" = 401
check "401 says Bearer in WWW-Authenticate" bash -c "curl -s -D - -o /dev/null '$BASE/v1/tasks' | grep -qi '^WWW-Authenticate: Bearer'"
check "a wrong token: 401" test "$(code -H 'Authorization: Bearer alice-0123456789abcdef012345678X' "$BASE/v1/tasks")" = 401
check "health needs no token" test "$(code "$BASE/healthz")" = 200

AUTH=("${A[@]}")
id=$(submit "$DATA/phototest.tif" "engine=null")
check "alice's submission is accepted" test -n "$id"
check "alice sees her task" test "$(code "${A[@]}" "$BASE/v1/tasks/$id")" = 200
check "bob cannot see it: 404" test "$(code "${B[@]}" "$BASE/v1/tasks/$id")" = 404
check "bob cannot read its events: 404" test "$(code "${B[@]}" "$BASE/v1/tasks/$id/events")" = 404
check "bob cannot cancel it: 404" test "$(code -X DELETE "${B[@]}" "$BASE/v1/tasks/$id")" = 404
check "bob's list does not hold it" bash -c "curl -s ${B[*]@Q} '$BASE/v1/tasks' | python3 -c 'import json,sys; assert all(t[\"id\"]!=\"$id\" for t in json.load(sys.stdin)[\"tasks\"])'"
check "the admin sees it" test "$(code "${R[@]}" "$BASE/v1/tasks/$id")" = 200
check "the admin's list holds it" bash -c "curl -s ${R[*]@Q} '$BASE/v1/tasks' | grep -q '$id'"
check "the admin can cancel it" test "$(code -X DELETE "${R[@]}" "$BASE/v1/tasks/$id")" = 200
check "... and it is cancelled" bash -c "curl -s ${A[*]@Q} '$BASE/v1/tasks/$id' | grep -q '\"status\":\"cancelled\"'"
check "a submit token cannot unload a model: 403" test "$(code -X POST "${A[@]}" "$BASE/v1/models/fast/unload")" = 403
check "... with a problem body saying why" grep -q '"detail":"loading and unloading models needs an admin token"' "$TMP/body"
check "an admin token can: 202" test "$(code -X POST "${R[@]}" "$BASE/v1/models/fast/unload")" = 202
check "any token reads the models" test "$(code "${A[@]}" "$BASE/v1/models")" = 200

stop_server
done_testing

#!/usr/bin/env bash
# The model manager (issue 4, acceptance 6; GET and POST /v1/models), with
# real workers holding real memory: two models that do not fit together under
# the budget are loaded and unloaded least recently used first, never while a
# page uses them, and /v1/models counts it; an admin loads and unloads a model
# by name; keep_alive unloads an idle model while its worker stays.
source "$(dirname "$0")/lib.sh"

skip_if_sanitized

# Each null model holds 80 MB while loaded: one fits in 150 MB with the
# server, a worker and a page; two do not.
cat >"$TMP/ocrpool.yaml" <<'YAML'
devices:
  cpu:
    budget: 150MB
models:
  - name: alpha
    engine: null
    languages: alpha
    keep_alive: 10m
  - name: beta
    engine: null
    languages: beta
    keep_alive: 10m
  - name: gamma
    engine: null
    languages: gamma
    keep_alive: 1s
YAML
export OCRPOOL_NULL_OPTS=model_mb=80,sleep_ms=100
start_server "$TMP/var" --workers 2 --config "$TMP/ocrpool.yaml" || { done_testing; exit 1; }
models() { curl -s "$BASE/v1/models" -o "$TMP/models.json"; }
# until_models SECONDS EXPR: polls /v1/models until the Python EXPR on m
# (the models by name) holds.
until_models() {
  for _ in $(seq 1 $(($1 * 10))); do
    models
    python3 -c "
import json, sys
m = {x['name']: x for x in json.load(open('$TMP/models.json'))['models']}
sys.exit(0 if $2 else 1)" && return 0
    sleep 0.1
  done
  return 1
}

# ---- 6. alternating tasks: the first alone (a model's footprint is learned
# when it first loads: until then only the engine's prior is known), then the
# other five at once.
ids=("$(submit "$DATA/linn.pdf" "model=alpha&dpi=30&format=json")")
wait_task "${ids[0]}" 60 >/dev/null
for m in beta alpha beta alpha beta; do ids+=("$(submit "$DATA/linn.pdf" "model=$m&dpi=30&format=json")"); done
ok=yes
for id in "${ids[@]}"; do [ "$(wait_task "$id" 120)" = succeeded ] || ok=no; done
check "alternating models: all six tasks succeed" test "$ok" = yes
check "... the two models never ran at once and no page was retried" python3 -c "
import json, urllib.request
spans = []
for id in '${ids[*]}'.split():
    ev = json.load(urllib.request.urlopen('$BASE/v1/tasks/' + id + '/events'))['events']
    assert not any(e['type'] in ('retried', 'page_failed') for e in ev), ev
    start = [e for e in ev if e['type'] == 'page_started'][0]
    end = [e for e in ev if e['type'] == 'page_done'][0]
    spans.append((start['time'], end['time'], start['details']['model']))
spans.sort()
for a, b in zip(spans, spans[1:]):
    assert a[2] == b[2] or a[1] <= b[0], (a, b)
runs = [m for i, (_, _, m) in enumerate(spans) if i == 0 or spans[i - 1][2] != m]
json.dump(runs, open('$TMP/runs.json', 'w'))"
# Pages run in the order admission found them, not always the submission's:
# each run of one model's pages after the other's is one load and one unload.
# The counts are polled: the last unload may be recorded just after its page.
counted() {
  models
  python3 -c "
import json
runs = json.load(open('$TMP/runs.json'))
m = {x['name']: x for x in json.load(open('$TMP/models.json'))['models']}
for name in ('alpha', 'beta'):
    x = m[name]
    assert x['loads'] == runs.count(name), (name, x['loads'], runs)
    assert x['unloads']['budget'] == runs.count(name) - (runs[-1] == name), (name, x['unloads'], runs)
    assert x['unloads']['crash'] == 0 and x['refcount'] == 0, x
    assert x['state'] == ('loaded' if runs[-1] == name else 'unloaded'), (name, x['state'], runs)
assert len(runs) >= 3, runs
print('runs', runs)" 2>"$TMP/counted.err"
}
check "... /v1/models counts a load per switch and an unload to make room for each" wait_for 10 counted ||
  cat "$TMP/counted.err"
last=$(python3 -c "import json; print(json.load(open('$TMP/runs.json'))[-1])")
last_unloads=$(python3 -c "import json; print({x['name']: x for x in json.load(open('$TMP/models.json'))['models']}['$last']['unloads']['budget'])")
check "... each unload is logged as least recently used" grep -q "unloading model null:alpha from worker [0-9] to make room (least recently used)" "$TMP/server.log"

# ---- admin: load by name (it makes room as a page would), keep_alive, unload
check "POST /v1/models/gamma/load answers 202" test "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$BASE/v1/models/gamma/load")" = 202
check "... gamma loads, and $last is unloaded to make room" \
  until_models 10 "m['gamma']['loads'] == 1 and m['$last']['unloads']['budget'] == $last_unloads + 1"
pids_before=$(pgrep -P "$SERVER_PID" | sort | tr '\n' ' ')
check "keep_alive 1s: idle gamma is unloaded" \
  until_models 6 "m['gamma']['unloads']['keep_alive'] == 1 and m['gamma']['state'] == 'unloaded'"
check "... and its worker stays" test "$(pgrep -P "$SERVER_PID" | sort | tr '\n' ' ')" = "$pids_before"
id=$(submit "$DATA/linn.pdf" "model=alpha&dpi=30&format=json")
check "a task loads alpha again" test "$(wait_task "$id" 60)" = succeeded
check "POST /v1/models/alpha/unload answers 202" test "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$BASE/v1/models/alpha/unload")" = 202
check "... alpha is unloaded, counted as admin" \
  until_models 5 "m['alpha']['unloads']['admin'] == 1 and m['alpha']['state'] == 'unloaded'"
curl -s -X POST "$BASE/v1/models/nosuch/load" -o "$TMP/p.json" -w '%{http_code}' >"$TMP/code"
check "an unknown model is 404 with a problem body" python3 -c "
import json
assert open('$TMP/code').read() == '404'
p = json.load(open('$TMP/p.json'))
assert p['status'] == 404 and 'no such model' in p['detail'], p"
check "GET on a load route is 405" test "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/v1/models/alpha/load")" = 405
stop_server
unset OCRPOOL_NULL_OPTS

# ---- the annotated example configuration loads, and declares what it says
start_server "$TMP/var2" --config ocrpool.example.yaml || { done_testing; exit 1; }
models
check "ocrpool.example.yaml: the server starts on it and lists its models" python3 -c "
import json
m = {x['name']: x for x in json.load(open('$TMP/models.json'))['models']}
assert sorted(m) == ['deu+eng', 'eng', 'fra'], sorted(m)
assert m['eng']['max_concurrent'] == 2 and m['eng']['preload'] and m['eng']['keep_alive_s'] == 300, m['eng']
assert m['eng']['recycle']['max_memory_growth_bytes'] == 300 << 20, m['eng']
assert m['deu+eng']['recycle']['max_tasks'] == 100 and m['deu+eng']['memory_limit_bytes'] > 0, m['deu+eng']
assert m['fra']['recycle']['isolate'] == 'per_task' and m['fra']['fallback'] == 'eng', m['fra']"
stop_server
# ---- a model that cannot load fails its task with the reason, and is not
# tried again before its cooldown: the next task fails at once, no page started
printf 'models:\n  - name: nosuch\n    engine: tesseract\n    languages: zzz\n' >"$TMP/nosuch.yaml"
start_server "$TMP/var3" --workers 1 --config "$TMP/nosuch.yaml" || { done_testing; exit 1; }
a=$(submit "$DATA/phototest.tif" "model=nosuch")
check "a model that cannot load fails its task" test "$(wait_task "$a" 60)" = failed
check "... with model_unavailable" bash -c "curl -s '$BASE/v1/tasks/$a' | grep -q '\"failure_reason\":\"model_unavailable\"'"
b=$(submit "$DATA/phototest.tif" "model=nosuch")
check "the next task of that model fails too" test "$(wait_task "$b" 10)" = failed
check "... at once, saying when it is tried again, with no page started" python3 -c "
import json, urllib.request
t = json.load(urllib.request.urlopen('$BASE/v1/tasks/$b'))
assert t['failure_reason'] == 'model_unavailable' and 'tried again in' in t['error'], t
ev = json.load(urllib.request.urlopen('$BASE/v1/tasks/$b/events'))['events']
assert not any(e['type'] == 'page_started' for e in ev), ev
m = json.load(urllib.request.urlopen('$BASE/v1/models'))['models'][0]
assert m['state'] == 'failed' and m['last_error'], m"
stop_server
printf 'models:\n  - name: a\n    languages: eng\n  - name: b\n    languages: eng\n' >"$TMP/twice.yaml"
"$OCRPOOL" serve --config "$TMP/twice.yaml" --data-dir "$TMP/bad" --listen 127.0.0.1:0 2>"$TMP/twice.err"
check "one model declared under two names stops start-up with file:line" grep -q 'twice.yaml:4: model "b" has the engine and languages of "a"' "$TMP/twice.err"
done_testing

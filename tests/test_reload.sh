#!/usr/bin/env bash
# SIGHUP reloads the configuration (issue 5): the log level, the budget, the
# pressure settings and each model's tunables change while the server runs,
# and the log says what changed; a new model needs a restart and the log says
# so; a file with an error changes nothing and the server goes on.
source "$(dirname "$0")/lib.sh"

write_config() { # KEEP_ALIVE MAX_CONCURRENT LEVEL BUDGET [EXTRA_MODEL]
  cat >"$TMP/ocrpool.yaml.tmp" <<YAML
log:
  level: $3
devices:
  cpu:
    budget: $4
models:
  - name: fast
    engine: null
    languages: fast
    keep_alive: $1
    max_concurrent: $2
${5:-}
YAML
  mv "$TMP/ocrpool.yaml.tmp" "$TMP/ocrpool.yaml"
}
model() { curl -s "$BASE/v1/models" | python3 -c "
import json, sys
m = {x['name']: x for x in json.load(sys.stdin)['models']}['fast']
print(m['keep_alive_s'], m['max_concurrent'])"; }
budget() { curl -s "$BASE/v1/memory" | python3 -c "import json, sys; print(json.load(sys.stdin)['devices'][0]['budget_bytes'])"; }
# until SECONDS COMMAND...: retries the command until it succeeds.
until_ok() {
  local n=$(($1 * 10))
  shift
  for _ in $(seq 1 "$n"); do "$@" && return 0; sleep 0.1; done
  return 1
}

write_config 10m 1 info 1GB
start_server "$TMP/var" --workers 2 --config "$TMP/ocrpool.yaml" || { done_testing; exit 1; }
check "the file's values are in force" test "$(model) $(budget)" = "600.0 1 1073741824"
check "log.level info from the file: no debug lines" bash -c "! grep -q 'level=debug' '$TMP/server.log'"

# Requests keep coming while the server reloads: none may be dropped.
cat >"$TMP/steady.py" <<'PY'
import os, sys, urllib.request
base, out, started, stop = sys.argv[1:5]
codes = []
while not os.path.exists(stop):
    for path in ("/v1/tasks?limit=5", "/v1/models", "/healthz"):
        try:
            with urllib.request.urlopen(base + path, timeout=10) as r:
                codes.append(r.status)
        except Exception as e:
            codes.append(repr(e))
    if len(codes) == 3:
        open(started, "w").close()
open(out, "w").write("\n".join(map(str, codes)))
PY
python3 "$TMP/steady.py" "$BASE" "$TMP/codes" "$TMP/steady.started" "$TMP/steady.stop" &
steady=$!
wait_for 30 test -e "$TMP/steady.started"
write_config 30s 2 debug 2GB
# reloads N: more than N reloads are done, as the log says.
reloads() { [ "$(grep -c 'reload: done' "$TMP/server.log")" -gt "$1" ]; }
before=$(grep -c 'reload: done' "$TMP/server.log")
kill -HUP "$SERVER_PID"
check "a SIGHUP is applied while requests come" wait_for 30 reloads "$before"
kill -HUP "$SERVER_PID"
check "... and a second one" wait_for 30 reloads "$((before + 1))"
touch "$TMP/steady.stop"
wait "$steady"
check "no request was dropped while the server reloaded ($(wc -l <"$TMP/codes") answered)" \
  bash -c "[ \$(wc -l <'$TMP/codes') -gt 10 ] && ! grep -qv '^200$' '$TMP/codes'"
model_is() { test "$(model)" = "$1"; }
check "after SIGHUP the model's keep_alive and max_concurrent changed" until_ok 10 model_is "30.0 2"
check "... and the budget" test "$(budget)" = 2147483648
check "the log says what changed" bash -c "grep -q 'reload: model fast: keep_alive: 600 -> 30' '$TMP/server.log' &&
  grep -q 'reload: devices.cpu.budget: 1 GB -> 2 GB' '$TMP/server.log' && grep -q 'reload: log.level: info -> debug' '$TMP/server.log'"
id=$(submit "$DATA/linn.pdf" "model=fast&dpi=30&format=json")
check "the server goes on serving" test "$(wait_task "$id" 60)" = succeeded
check "the new log level is in force (debug lines now)" until_ok 5 grep -q 'level=debug' "$TMP/server.log"

write_config 30s 2 debug 2GB "  - name: other
    engine: null
    languages: other"
kill -HUP "$SERVER_PID"
check "a new model: the log says it needs a restart" until_ok 10 grep -q 'reload: the models were added, removed or redefined' "$TMP/server.log"
check "... and the models in use stay" test "$(curl -s "$BASE/v1/models" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["models"]))')" = 1

printf 'models:\n  - name: fast\n    keep_alive: soon\n' >"$TMP/ocrpool.yaml"
kill -HUP "$SERVER_PID"
check "a bad file: the error is logged with file:line and nothing changes" until_ok 10 grep -q "reload: .*ocrpool.yaml:3: \\\\\"keep_alive\\\\\": expected a duration.*the configuration in use stays" "$TMP/server.log"
check "... the settings in force are the last good ones" test "$(model) $(budget)" = "30.0 2 2147483648"
stop_server
done_testing

#!/usr/bin/env bash
# Configuration (issue 5): one YAML file, every key also an environment
# variable OCRPOOL_<SECTION>_<KEY>, the common ones flags; flag > env > file >
# default; `ocrpool config` prints the effective values and where each came
# from; a bad value, from the file or the environment, stops with where it is.
source "$(dirname "$0")/lib.sh"

cfg() { "$OCRPOOL" config "$@" >"$TMP/out" 2>"$TMP/err"; }
line() { awk -v k="$1" '$1 == k {print $2, $3}' "$TMP/out"; }

cfg --config ocrpool.example.yaml
check "ocrpool config reads the example: exit 0" test $? -eq 0
check "... a value from the file says file" test "$(line pressure.defer_below)" = "5 file"
check "... a value nowhere says default" test "$(line server.listen)" = "127.0.0.1:8080 default"
check "... the models are counted" test "$(line models)" = "3 file"
OCRPOOL_PRESSURE_COOLDOWN=2s OCRPOOL_SERVER_WORKERS=5 cfg --config ocrpool.example.yaml
check "the environment wins over the file" test "$(line pressure.cooldown)" = "2s env"
check "... and over the defaults" test "$(line server.workers)" = "5 env"
OCRPOOL_SERVER_WORKERS=5 cfg --config ocrpool.example.yaml --workers 3
check "a flag wins over the environment" test "$(line server.workers)" = "3 flag"
OCRPOOL_DEVICES_CPU_BUDGET=lots cfg
check "a bad value in the environment: exit 2" test $? -eq 2
check "... naming the variable" grep -q "environment OCRPOOL_DEVICES_CPU_BUDGET: .*\"lots\"" "$TMP/err"
printf 'server:\n  workers: many\n' >"$TMP/bad.yaml"
cfg --config "$TMP/bad.yaml"
check "a bad value in the file: exit 2 with file:line" grep -q 'bad.yaml:2: "workers": expected a whole number' "$TMP/err"
printf 'server:\n  listen: 127.0.0.1:0\n  max_input_size: 12XB\n' >"$TMP/size.yaml"
"$OCRPOOL" serve --config "$TMP/size.yaml" --data-dir "$TMP/x" 2>"$TMP/err"
check "serve refuses a bad size with file:line: exit 2" bash -c "[ $? -eq 2 ] && grep -q 'size.yaml:3: \"max_input_size\": expected a size' '$TMP/err'"
printf 'server:\n  wrokers: 2\n' >"$TMP/typo.yaml"
"$OCRPOOL" serve --config "$TMP/typo.yaml" --data-dir "$TMP/x" 2>"$TMP/err"
check "serve refuses a misspelled server key" grep -q 'typo.yaml:2: unknown key "wrokers"' "$TMP/err"

# Every server.* setting `ocrpool config` lists can come from the environment
# (OCRPOOL_SERVER_<KEY>): a setting added to the table but not to the
# environment's list would show "default" here.
cfg
missed=""
for key in $(awk '$1 ~ /^server\./ {print $1}' "$TMP/out"); do
  var=OCRPOOL_$(echo "$key" | tr 'a-z.' 'A-Z_')
  env "$var=1" "$OCRPOOL" config 2>&1 | awk -v k="$key" '$1 == k && $NF != "env" {bad=1} END {exit !bad}' && missed="$missed $var"
done
check "each of the $(grep -c '^server\.' "$TMP/out") server.* settings is read from its OCRPOOL_SERVER_* variable" test -z "$missed" \
  || echo "# not read:$missed"

# The server runs with what the file and the environment say.
printf 'server:\n  max_input_size: 1KB\n' >"$TMP/small.yaml"
OCRPOOL_DEVICES_CPU_BUDGET=123MB start_server "$TMP/var" --config "$TMP/small.yaml" || { done_testing; exit 1; }
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST --data-binary "@$DATA/phototest.tif" "$BASE/v1/tasks?engine=null")
check "server.max_input_size from the file: a larger upload is 413" test "$code" = 413
check "devices.cpu.budget from the environment: 123 MB" \
  test "$(curl -s "$BASE/v1/memory" | python3 -c 'import json,sys; print(json.load(sys.stdin)["devices"][0]["budget_bytes"])')" = $((123 << 20))
stop_server
done_testing

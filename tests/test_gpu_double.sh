#!/usr/bin/env bash
# The GPU path without a GPU (issue 4, acceptance 9). This machine has no
# NVIDIA card, so the test uses the NVML TEST DOUBLE built from
# tests/nvml/nvml_double.c (build/nvml-double/libnvidia-ml.so.1, put first on
# LD_LIBRARY_PATH): a stand-in for NVIDIA's library that reports a device and
# per-process VRAM from a file this test writes. Everything else is real: the
# server, its workers, the null engine's pages. The test checks that the
# server sees the device, counts the VRAM of its own workers only, and that
# admission, levels and the CPU fallback follow what the card reports.
source "$(dirname "$0")/lib.sh"

DOUBLE_DIR=$(dirname "$OCRPOOL")/nvml-double
if [ ! -e "$DOUBLE_DIR/libnvidia-ml.so.1" ]; then
  echo "skipped: the NVML test double was not built ($DOUBLE_DIR)"
  exit 77
fi
NVML_FILE=$TMP/nvml.txt
# nvml LINES...: the card as the double reports it (renamed into place: no half file is read).
nvml() {
  printf '%s\n' "device FakeGPU-16G 17179869184 1073741824" "$@" >"$NVML_FILE.tmp"
  mv "$NVML_FILE.tmp" "$NVML_FILE"
}
nvml
cat >"$TMP/ocrpool.yaml" <<'YAML'
devices:
  cuda:
    budget: 50%          # 8 GiB of the double's 16 GiB card
pressure:
  cooldown: 1s
models:
  - name: gpu            # pretends to run on the GPU (the null engine uses none)
    engine: null
    languages: gpu
    device: cuda:0
    memory_limit: 4GB    # its VRAM share: what admission reserves on the card, and its cap there
    fallback: cpu
  - name: cpu            # the CPU variant
    engine: null
    languages: cpu
  - name: gpu-only       # no fallback: it waits for room on the card
    engine: null
    languages: gpuonly
    device: cuda:0
    memory_limit: 2GB
  - name: elsewhere      # a GPU this machine does not have
    engine: null
    languages: elsewhere
    device: cuda:1
YAML
export OCRPOOL_NULL_OPTS=sleep_ms=1500
export LD_LIBRARY_PATH=$DOUBLE_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export OCRPOOL_NVML_DOUBLE=$NVML_FILE
start_server "$TMP/var" --workers 2 --config "$TMP/ocrpool.yaml" || { done_testing; exit 1; }
memory() { curl -s "$BASE/v1/memory" -o "$TMP/memory.json"; }
# until_gpu SECONDS EXPR: polls /v1/memory until EXPR holds for d, the cuda:0 device.
until_gpu() {
  for _ in $(seq 1 $(($1 * 10))); do
    memory
    gpu "$2" && return 0
    sleep 0.1
  done
  return 1
}
gpu() { python3 -c "
import json, sys
d = [x for x in json.load(open('$TMP/memory.json'))['devices'] if x['name'] == 'cuda:0'][0]
sys.exit(0 if $1 else 1)"; }
task() { curl -s "$BASE/v1/tasks/$1" | python3 -c "import json, sys; t = json.load(sys.stdin); print(t['device'])"; }
started() { curl -s "$BASE/v1/tasks/$1/events" | python3 -c "
import json, sys
e = [e['details'] for e in json.load(sys.stdin)['events'] if e['type'] == 'page_started'][-1]
print(e['device'], e['model'], e.get('fallback_reason', '-'))"; }

memory
check "/v1/memory lists cuda:0 as the double reports it, with its budget" gpu \
  "d['card'] == 'FakeGPU-16G' and d['capacity_bytes'] == 16 << 30 and d['budget_bytes'] == 8 << 30 and d['used_bytes'] == 0 and d['all_processes_bytes'] == 1 << 30 and d['level'] == 'ok'"
check "the GPU is logged at start" grep -q "memory: cuda:0 FakeGPU-16G, capacity 16 GB, budget 8 GB" "$TMP/server.log"

# ---- a page of the gpu model runs on cuda:0; its worker's VRAM counts as ours
id=$(submit "$DATA/linn.pdf" "model=gpu&dpi=30&format=json")
wait_started "$id"
pid=$(curl -s "$BASE/v1/tasks/$id/events" | python3 -c "
import json, sys
print([e['details']['pid'] for e in json.load(sys.stdin)['events'] if e['type'] == 'page_started'][0])")
nvml "process 0 $pid 3221225472" "process 0 999999 2147483648" # 3 GiB ours, 2 GiB another program's
check "the worker's VRAM counts (3 GiB), another program's does not" until_gpu 10 "d['used_bytes'] == 3 << 30 and d['level'] == 'ok'"
check "... and the worker shows it" python3 -c "
import json
w = [w for w in json.load(open('$TMP/memory.json'))['workers'] if w['pid'] == $pid][0]
assert w['device'] == 'cuda:0' and w['vram_bytes'] == 3 << 30, w"
check "the gpu task succeeds on cuda:0" test "$(wait_task "$id" 30)" = succeeded
check "... recorded on the task and its page" test "$(task "$id") / $(started "$id")" = "cuda:0 / cuda:0 gpu -"

# ---- the worker now holds 7.8 GiB of the 8 GiB budget: critical; the next
# page of the model goes to its CPU fallback, recorded with the reason
nvml "process 0 $pid 8375186227"
check "7.8 GiB of 8 GiB: cuda:0 is critical" until_gpu 10 "d['level'] == 'critical'"
id=$(submit "$DATA/linn.pdf" "model=gpu&dpi=30&format=json")
check "the next gpu task succeeds" test "$(wait_task "$id" 30)" = succeeded
check "... on the CPU fallback, with the reason recorded" test "$(task "$id") / $(started "$id")" = \
  "cpu / cpu cpu its GPU's memory is critical"
memory
check "/v1/memory counts the fallback" gpu "d['fallbacks'] == 1"
check "under critical the idle worker's gpu model was unloaded (its VRAM with it)" python3 -c "
import json, urllib.request
m = {x['name']: x for x in json.load(urllib.request.urlopen('$BASE/v1/models'))['models']}
assert m['gpu']['unloads']['budget'] == 1 and m['gpu']['device'] == 'cuda:0', m['gpu']"

# ---- a model without a fallback waits for room on the card, then runs there
nvml "process 0 $pid 7516192768" # 7 GiB: warning, but 2 GiB more would not fit the 8 GiB budget
until_gpu 10 "d['level'] == 'warning'"
id=$(submit "$DATA/linn.pdf" "model=gpu-only&dpi=30&format=json")
check "the gpu-only task waits for memory while its 2 GiB do not fit" wait_for 30 has_event "$id" waiting_for_memory
check "... and has not run" test "$(task_status "$id")" = queued
nvml "process 0 $pid 1073741824"
check "once the card has room it runs on cuda:0" test "$(wait_task "$id" 30)" = succeeded
check "... recorded so" test "$(task "$id")" = cuda:0

# ---- a GPU that is not there: the task fails with a sentence saying so
id=$(submit "$DATA/linn.pdf" "model=elsewhere&dpi=30&format=json")
check "a model on a missing GPU without a fallback fails" test "$(wait_task "$id" 30)" = failed
check "... with device_unavailable and why" bash -c "curl -s '$BASE/v1/tasks/$id' | grep -q '\"failure_reason\":\"device_unavailable\".*runs on cuda:1, and this machine has 1 GPU'"
stop_server

# ---- without the library (the normal CPU-only case) the server says so once and runs
unset OCRPOOL_NVML_DOUBLE
start_server "$TMP/var2" --workers 1 || { done_testing; exit 1; }
check "no NVML: the cpu device only, said once" test "$(grep -c 'GPUs: none' "$TMP/server.log")" = 1
memory
check "... and /v1/memory lists the cpu alone" python3 -c "
import json
assert [d['name'] for d in json.load(open('$TMP/memory.json'))['devices']] == ['cpu']"
stop_server
done_testing

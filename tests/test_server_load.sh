#!/usr/bin/env bash
# 200 submissions of small real pages from 20 concurrent clients that honour
# 429 + Retry-After: all complete with the right text, and the task listing and
# each task's events agree with what happened.
source "$(dirname "$0")/lib.sh"

# Null-engine pages sleep 60 s: the flood below keeps the queue full with them
# however slowly a loaded machine takes the submissions (they are cancelled after).
export OCRPOOL_NULL_OPTS=sleep_ms=60000
start_server "$TMP/var" --workers 2 --max-queue 10 || { done_testing; exit 1; }
"$OCRPOOL" ocr -q "$DATA/HelloGoogle.tif" >"$TMP/hello.txt" 2>/dev/null
"$OCRPOOL" ocr -q "$DATA/crom.png" >"$TMP/crom.txt" 2>/dev/null
cat >"$TMP/load.py" <<'PY'
import json, sys, threading, time, urllib.request, urllib.error, collections
base, data, tmp = sys.argv[1], sys.argv[2], sys.argv[3]
pages = {"HelloGoogle.tif": open(tmp + "/hello.txt").read(), "crom.png": open(tmp + "/crom.txt").read()}
blobs = {name: open(data + "/" + name, "rb").read() for name in pages}
results, errors, throttled = [], [], [0]
lock = threading.Lock()

def call(method, path, body=None):
    req = urllib.request.Request(base + path, data=body, method=method)
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.status, r.read()

def client(k):
    for i in range(10):
        name = sorted(pages)[(k + i) % 2]
        while True:
            try:
                status, body = call("POST", "/v1/tasks?name=" + name, blobs[name])
                break
            except urllib.error.HTTPError as e:
                if e.code != 429:
                    with lock: errors.append("submit %s: %d %s" % (name, e.code, e.read()[:200]))
                    return
                with lock: throttled[0] += 1
                time.sleep(float(e.headers.get("Retry-After", "1")))
        tid = json.loads(body)["id"]
        for _ in range(1200):
            task = json.loads(call("GET", "/v1/tasks/" + tid)[1])
            if task["status"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.1)
        text = call("GET", "/v1/tasks/%s/result" % tid)[1].decode() if task["status"] == "succeeded" else None
        with lock: results.append((tid, name, task["status"], text == pages[name]))

threads = [threading.Thread(target=client, args=(k,)) for k in range(20)]
for t in threads: t.start()
for t in threads: t.join()
assert not errors, errors[:5]
assert len(results) == 200, len(results)
bad = [r for r in results if r[2] != "succeeded" or not r[3]]
assert not bad, bad[:5]
print("200 tasks succeeded with the right text; %d submissions were throttled (429) and retried" % throttled[0])
# The listing holds all 200, succeeded, and each task's events tell its story once.
listed, after = {}, ""
while True:
    page = json.loads(call("GET", "/v1/tasks?limit=70" + ("&after=" + after if after else ""))[1])
    listed.update({t["id"]: t for t in page["tasks"]})
    if not page["next"]: break
    after = page["next"]
ids = [r[0] for r in results]
assert all(listed[i]["status"] == "succeeded" and listed[i]["pages_done"] == 1 for i in ids)
for i in ids:
    ev = [e["type"] for e in json.loads(call("GET", "/v1/tasks/%s/events" % i)[1])["events"]]
    starts, dones, retries = ev.count("page_started"), ev.count("page_done"), ev.count("retried")
    assert dones == 1 and starts == 1 + retries, (i, ev)
    assert ev[0] == "created" and ev[-1] == "succeeded", ev
print("listing and events agree for all 200")
PY
check "20 clients x 10 tasks: all correct, listing and events agree" python3 "$TMP/load.py" "$BASE" "$DATA" "$TMP"

# A flood past --max-queue: the 13th and later submissions are refused with 429
# and Retry-After while 2 run and 10 wait (60-second null pages keep them there).
codes=""
flood=()
for i in $(seq 1 14); do
  out=$(curl -s -D "$TMP/h$i" -w '\n%{http_code}' -X POST --data-binary "@$DATA/phototest.tif" "$BASE/v1/tasks?engine=null")
  codes="$codes $(echo "$out" | tail -1)"
  id=$(echo "$out" | head -1 | sed -n 's/^{"id":"\([0-9a-f]*\)".*/\1/p')
  [ -n "$id" ] && flood+=("$id")
done
echo "flood answers:$codes"
check "the flood is refused past the queue's size: 429" bash -c "echo '$codes' | grep -q 429"
check "10 to 12 of the flood were taken (10 queued, up to 2 started), no more" test "${#flood[@]}" -ge 10 -a "${#flood[@]}" -le 12
check "429 comes with Retry-After" bash -c "grep -l '^HTTP/1.1 429' $TMP/h* | head -1 | xargs grep -qi '^Retry-After: [0-9]'"
check "429 is problem+json" bash -c "grep -l '^HTTP/1.1 429' $TMP/h* | head -1 | xargs grep -qi '^Content-Type: application/problem+json'"
for id in "${flood[@]}"; do curl -s -o /dev/null -X DELETE "$BASE/v1/tasks/$id"; done
stop_server
done_testing

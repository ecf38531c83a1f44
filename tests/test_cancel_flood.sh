#!/usr/bin/env bash
# 500 cancels at once: every DELETE the server answers 200 or 202 ends its
# task cancelled; none is dropped. Cancels travel through the service's one
# bounded mailbox, sized from --max-queue; a full mailbox answers 503 with
# Retry-After, never a 202 that does nothing.
source "$(dirname "$0")/lib.sh"

# One worker, held by a page that takes a minute: the other tasks stay queued.
export OCRPOOL_NULL_OPTS=sleep_ms=60000
start_server "$TMP/var" --workers 1 --max-queue 600 --queue-timeout 600 || { done_testing; exit 1; }

(cd "$TMP" && python3 - "$BASE" "$DATA/phototest.tif") >"$TMP/flood.out" 2>&1 <<'PY'
import json, sys, urllib.request, urllib.error
from concurrent.futures import ThreadPoolExecutor
base, path = sys.argv[1], sys.argv[2]
body = open(path, 'rb').read()

def submit(_):
    req = urllib.request.Request(base + '/v1/tasks?engine=null', data=body, method='POST',
                                 headers={'Content-Type': 'application/octet-stream'})
    return json.load(urllib.request.urlopen(req, timeout=120))['id']

def cancel(id):
    req = urllib.request.Request(base + '/v1/tasks/' + id, method='DELETE')
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return id, r.status, None
    except urllib.error.HTTPError as e:
        return id, e.code, e.headers.get('Retry-After')

with ThreadPoolExecutor(16) as pool:
    ids = list(pool.map(submit, range(500)))
print('submitted', len(ids))
with ThreadPoolExecutor(100) as pool:
    answers = list(pool.map(cancel, ids))
codes = {}
for _, code, _ in answers:
    codes[code] = codes.get(code, 0) + 1
print('answers', codes)
bad = [a for a in answers if a[1] not in (200, 202, 409, 503) or (a[1] == 503 and a[2] is None)]
print('bad answers', len(bad), bad[:3])
accepted = [a[0] for a in answers if a[1] in (200, 202)]
with open('accepted.json', 'w') as f:
    json.dump(accepted, f)
PY
check "500 tasks submitted" grep -q '^submitted 500$' "$TMP/flood.out" || cat "$TMP/flood.out"
check "every answer is 200, 202, 409 (already over) or 503 with Retry-After: $(grep answers "$TMP/flood.out")" \
  grep -q '^bad answers 0 ' "$TMP/flood.out"
# Every accepted cancel ends its task cancelled (the one running is killed with its worker).
(cd "$TMP" && python3 - "$BASE") >"$TMP/ended.out" 2>&1 <<'PY'
import json, sys, time, urllib.request
base = sys.argv[1]
accepted = json.load(open('accepted.json'))
left = set(accepted)
deadline = time.time() + 120
statuses = {}
while left and time.time() < deadline:
    for id in list(left):
        s = json.load(urllib.request.urlopen(base + '/v1/tasks/' + id))['status']
        if s in ('succeeded', 'failed', 'cancelled'):
            statuses[s] = statuses.get(s, 0) + 1
            left.discard(id)
    if left:
        time.sleep(0.2)
print('accepted', len(accepted), 'ended', statuses, 'still open', len(left))
PY
check "every accepted cancel ended its task cancelled: $(cat "$TMP/ended.out")" \
  bash -c "grep -q \"^accepted \\([1-9][0-9]*\\) ended {'cancelled': \\1} still open 0\$\" '$TMP/ended.out'"
stop_server
done_testing

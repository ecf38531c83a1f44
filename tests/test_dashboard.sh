#!/usr/bin/env bash
# The dashboard at / in real headless Chromium (Debian's `chromium`): against
# a server with work in flight, the page's charts and tables show the figures
# the API gives at about the same time (budgets and thresholds, worker pids,
# models, the queue by priority, a running task's progress), the memory chart
# has drawn its history, and the page asks for a token when the server needs
# one and sends the one in its #token= fragment.
source "$(dirname "$0")/lib.sh"

CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$CHROMIUM" ]; then
  echo "skipped: no chromium to load the page in (apt-get install chromium; make check installs it)"
  exit 77
fi

# The NVML test double, when built, adds a GPU (cuda:0): the page then draws a chart per device.
DOUBLE_DIR=$(dirname "$OCRPOOL")/nvml-double
if [ -e "$DOUBLE_DIR/libnvidia-ml.so.1" ]; then
  printf 'device FakeGPU-16G 17179869184 1073741824\n' >"$TMP/nvml.txt"
  export LD_LIBRARY_PATH=$DOUBLE_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} OCRPOOL_NVML_DOUBLE=$TMP/nvml.txt
fi

TOKEN=root-0123456789abcdef0123456789a
echo "$TOKEN admin ops" >"$TMP/tokens"
AUTH=(-H "Authorization: Bearer $TOKEN")
# Pages of 4 s that hold 30 MB each: work stays in flight while Chromium looks.
export OCRPOOL_NULL_OPTS=sleep_ms=4000,alloc_mb=30
start_server "$TMP/var" --workers 2 --memory-budget 300M --tokens "$TMP/tokens" --drain-timeout 1 ||
  { done_testing; exit 1; }

# An 8-page task at priority 5 keeps both workers busy; four one-page tasks of
# lower priorities wait behind it.
qpdf --empty --pages $(for _ in 1 2 3 4 5 6 7 8; do echo "$DATA/linn.pdf"; done) -- "$TMP/eight.pdf"
big=$(submit "$TMP/eight.pdf" "engine=null&priority=5")
for p in 1 2 2 4; do submit "$DATA/linn.pdf" "engine=null&priority=$p" >/dev/null; done
done_pages() { curl -s "${AUTH[@]}" "$BASE/v1/tasks/$big" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pages_done"])'; }
for _ in $(seq 1 300); do [ "$(done_pages)" -ge 2 ] && break; sleep 0.1; done

# snapshot NAME: what the API says now.
snapshot() {
  for r in memory:/v1/memory models:/v1/models tasks:'/v1/tasks?limit=20' queued:'/v1/tasks?status=queued&limit=1000'; do
    curl -s "${AUTH[@]}" "$BASE${r#*:}" -o "$TMP/$1.${r%%:*}.json"
  done
}
# page URL FILE: the page's DOM after 5 s of Chromium's virtual time, about
# five polls (virtual time stands still while a request is out).
page() {
  timeout 120 "$CHROMIUM" --headless=new --disable-gpu --no-sandbox --no-first-run --user-data-dir="$TMP/chromium" \
    --virtual-time-budget=5000 --dump-dom "$1" >"$2" 2>>"$TMP/chromium.log"
}
snapshot before
page "$BASE/#token=$TOKEN" "$TMP/page.html"
snapshot after
page "$BASE/" "$TMP/anonymous.html"
check "chromium loaded the page and ran its script" grep -q 'data-chart=' "$TMP/page.html" ||
  grep -v dbus "$TMP/chromium.log" | tail -20

# The rendered DOM as JSON: each element with an id or a data-* attribute,
# with its attributes and its text.
python3 - "$TMP/page.html" "$TMP/anonymous.html" <<'PY'
import html.parser, json, sys
VOID = {"meta", "link", "br", "img", "input", "hr", "col", "source", "wbr"}
class P(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(); self.stack = []; self.found = []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs); a["tag"] = tag
        node = {"attrs": a, "text": "", "kids": []}
        if self.stack: self.stack[-1]["kids"].append(node)
        if "id" in a or any(k.startswith("data-") for k in a): self.found.append(node)
        if tag not in VOID: self.stack.append(node)
    def handle_endtag(self, tag):
        while self.stack:
            if self.stack.pop()["attrs"]["tag"] == tag: break
    def handle_data(self, data):
        for n in self.stack: n["text"] += data
def flat(n): return {**n["attrs"], "text": n["text"].strip(), "kids": [flat(k) for k in n["kids"]]}
for path in sys.argv[1:]:
    p = P(); p.feed(open(path, encoding="utf-8").read())
    json.dump([flat(n) for n in p.found], open(path + ".json", "w"))
PY

# page_is 'PYTHON CONDITION': with `dom` (the page's elements), `before` and
# `after` (the API's answers either side of the page's load, by endpoint).
page_is() {
  python3 - "$TMP" "$1" <<'PY'
import json, sys
tmp, cond = sys.argv[1], sys.argv[2].strip()
dom = json.load(open(tmp + "/page.html.json"))
anonymous = json.load(open(tmp + "/anonymous.html.json"))
before, after = ({k: json.load(open(f"{tmp}/{s}.{k}.json")) for k in ("memory", "models", "tasks", "queued")}
                 for s in ("before", "after"))
def find(elements, **attrs):
    return [e for e in elements if all(e.get(k.replace("_", "-")) == str(v) for k, v in attrs.items())]
def one(elements, **attrs):
    got = find(elements, **attrs)
    assert len(got) == 1, f"{attrs}: {len(got)} elements"
    return got[0]
def descendants(e):
    for k in e["kids"]: yield k; yield from descendants(k)
def size(b):  # as the page writes sizes (JavaScript's toFixed rounds halves up)
    unit, div = ("GB", 1 << 30) if b >= 1 << 30 else ("MB", 1 << 20)
    n = (b * 10 ** (2 if unit == "GB" else 1) * 2 + div) // (2 * div)
    digits = 2 if unit == "GB" else 1
    return f"{n // 10 ** digits}.{n % 10 ** digits:0{digits}d} {unit}"
def card(device): return one(dom, data_device=device)
def figure(device, name): return one(descendants(card(device)), data_field=name)
def chart(device): return one(dom, data_chart=device)
def task(snapshot, id): return [t for t in snapshot["tasks"]["tasks"] if t["id"] == id][0]
def queued(snapshot, p): return sum(t["priority"] == p for t in snapshot["queued"]["tasks"])
try:
    ok = eval("(" + cond + ")")
except Exception as e:  # an element the page should have drawn is missing
    ok = False; print("  " + type(e).__name__ + ":", e)
if not ok: print("  not so:", " ".join(cond.split()))
sys.exit(0 if ok else 1)
PY
}

check "the page says it is up to date" page_is 'one(dom, id="status")["data-state"] == "ok"'

# Memory: a card and a chart per device, with the device's own budget and levels.
check "a card per device, as /v1/memory lists them" page_is \
  '[e["data-device"] for e in find(dom, tag="div") if "data-device" in e] == [d["name"] for d in after["memory"]["devices"]]'
for field in budget_bytes warning_bytes critical_bytes capacity_bytes; do
  check "each device shows its $field as /v1/memory gives it, in MB or GB" page_is "all(
    figure(d['name'], '$field')['data-bytes'] == str(d['$field']) and figure(d['name'], '$field')['text'] == size(d['$field'])
    for d in after['memory']['devices'])"
done
check "each device shows its level" page_is \
  'all(card(b["name"])["data-level"] in (b["level"], a["level"]) for b, a in zip(before["memory"]["devices"], after["memory"]["devices"]))'
check "the cpu shows the memory in use: the server's and its workers'" page_is \
  'int(figure("cpu", "used_bytes")["data-bytes"]) > [d for d in after["memory"]["devices"] if d["name"] == "cpu"][0]["server_bytes"]'
check "each chart draws budget, warning and critical lines at the device's figures" page_is "all(
  one(chart(d['name'])['kids'], data_line=k)['data-bytes'] == str(d[k + '_bytes'])
  for d in after['memory']['devices'] for k in ('budget', 'warning', 'critical'))"
check "each chart has drawn several polls of used and reserved memory" page_is "all(
  int(chart(d['name'])['data-samples']) >= 2 and
  all(len(one(chart(d['name'])['kids'], data_series=s)['points'].split()) == int(chart(d['name'])['data-samples']) for s in ('used', 'reserved'))
  for d in after['memory']['devices'])"
# The chart's scale: 0 at the plot's bottom edge, the budget at its line; so
# the newest point of the used line must be the used figure the card shows.
check "the used line ends at the used figure the card shows" page_is "all(
  abs(d['budget_bytes'] * (zero - y) / (zero - ybudget) - int(figure(d['name'], 'used_bytes')['data-bytes'])) < d['budget_bytes'] / 50
  for d in after['memory']['devices']
  for c in [chart(d['name'])] for plot in [one(c['kids'], tag='rect')]
  for zero in [float(plot['y']) + float(plot['height'])] for ybudget in [float(one(c['kids'], data_line='budget')['y1'])]
  for y in [float(one(c['kids'], data_series='used')['points'].split()[-1].split(',')[1])])"

# Workers, models, the queue, the tasks.
check "the workers table lists the workers' pids" page_is \
  'sorted(e["data-pid"] for e in find(dom, tag="tr") if "data-pid" in e) == sorted(str(w["pid"]) for w in after["memory"]["workers"]) != []'
check "each worker shows its models" page_is \
  'all(w["models"] and ", ".join(w["models"]) in [k["text"] for k in one(dom, data_pid=w["pid"])["kids"]] for w in after["memory"]["workers"])'
check "the models table lists the models with their states" page_is \
  '{e["data-model"]: e["data-state"] for e in find(dom, tag="tr") if "data-model" in e} == {m["name"]: m["state"] for m in after["models"]["models"]} != {}'
check "the queue shows the queued tasks per priority" page_is \
  'all(int(one(dom, data_priority=p)["data-count"]) in (queued(before, p), queued(after, p)) for p in range(10))'
check "the queue holds the 4 tasks waiting behind the running one" page_is \
  '[queued(before, p) for p in (1, 2, 4)] == [1, 2, 1] and int(one(dom, id="queue-total")["data-count"]) in (4, len(after["queued"]["tasks"]))'
check "the recent tasks are the server's, newest first" page_is \
  '[e["data-task"] for e in find(dom, tag="tr") if "data-task" in e] == [t["id"] for t in after["tasks"]["tasks"]]'
check "the running task shows its progress: pages done out of 8" page_is "
  [(c['data-done'], c['data-total'], c['text']) for c in one(dom, data_task='$big')['kids'] if c.get('class') == 'progress'] in
  [[(str(n), '8', f'{n}/8 pages')] for n in range(task(before, '$big')['pages_done'], task(after, '$big')['pages_done'] + 1)]
  and task(before, '$big')['pages_done'] >= 2 and one(dom, data_task='$big')['data-status'] == 'running'"

# Without the token the page says what is missing instead of showing nothing.
check "without a token the page asks for one" page_is \
  'one(anonymous, id="status")["data-state"] == "error" and "#token=" in one(anonymous, id="status")["text"]'
# Its assets are inline, and its Content-Security-Policy lets it fetch from its own server only.
check "the page loads nothing from elsewhere" bash -c \
  "! grep -Eo '(src|href)=\"[^\"]*\"|url\\(' '$TMP/page.html' | grep -vx 'href=\"data:,\"' &&
   grep -q \"default-src 'none'; connect-src 'self'\" '$TMP/page.html'"

stop_server
done_testing

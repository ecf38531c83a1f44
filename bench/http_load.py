#!/usr/bin/env python3
"""bench/http_load.py: drives `ocrpool serve` over HTTP (stdlib only), with
keep-alive connections as a real client pools them, and polls a task every
5 ms (bench/rq_load.py polls RQ jobs the same way).

  pages BASE OUTDIR QUERY FILE...
      every file one task (to each node in turn), all submitted at once, then waits for all and
      writes each result to OUTDIR/NAME.txt (NAME.pdf with format=pdf);
      prints "SECONDS LAST_FINISHED" (the epoch time the last task finished)
  rate BASE FILE N CLIENTS QUERY
      N tasks from CLIENTS closed-loop clients (submit, wait, fetch the result);
      prints tasks/s
  ocr BASE FILE N CLIENTS QUERY
      the same through POST /v1/ocr, which answers with the result
  latency BASE FILE N RATE QUERY
      N tasks offered at RATE tasks/s (open loop); prints submit-to-result
      p50 and p99 in ms
  seq BASE FILE N QUERY
      N tasks one after another; prints the median submit-to-result ms
BASE may be several, comma-separated (nodes sharing one store): each new
connection goes to the next one in turn, and a task is followed on the node
that accepted it.
Every task must succeed with a result, else the exit status is 1.
"""
import calendar
import http.client
import itertools
import json
import os
import queue
import sys
import time
import urllib.parse

import loadgen  # bench/, the script's own directory

POLL = 0.005
DONE = ("succeeded", "failed", "cancelled")


_turn = itertools.count()  # next() on it is atomic under the GIL


class Client:
    """One keep-alive connection; reconnects when the server closed it."""

    def __init__(self, base):
        bases = base.split(",")
        self.host = urllib.parse.urlsplit(bases[next(_turn) % len(bases)]).netloc
        self.conn = None

    def call(self, method, path, body=None):
        for attempt in range(3):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(self.host, timeout=600)
                headers = {"Content-Type": "application/octet-stream"} if body is not None else {}
                self.conn.request(method, path, body=body, headers=headers)
                r = self.conn.getresponse()
                data = r.read()
                if r.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
            except (http.client.HTTPException, OSError):
                self.conn = None
                if attempt == 2:
                    raise
                continue
            if r.status == 429:  # queue full: as told
                time.sleep(float(r.getheader("Retry-After", "1")))
                continue
            return r.status, data
        raise SystemExit("%s %s: still refused" % (method, path))


def submit(c, blob, query):
    status, data = c.call("POST", "/v1/tasks?" + query, blob)
    if status != 202:
        raise SystemExit("submit: HTTP %d %s" % (status, data[:200]))
    return json.loads(data)["id"]


def wait(c, tid):
    while True:
        status, data = c.call("GET", "/v1/tasks/" + tid)
        t = json.loads(data)
        if t["status"] in DONE:
            break
        time.sleep(POLL)
    if t["status"] != "succeeded":
        raise SystemExit("task %s %s: %s" % (tid, t["status"], t.get("error")))
    return t


def result(c, tid):
    status, data = c.call("GET", "/v1/tasks/%s/result" % tid)
    if status != 200:
        raise SystemExit("result %s: HTTP %d" % (tid, status))
    return data


def one_task(c, blob, query):
    tid = submit(c, blob, query)
    wait(c, tid)
    return result(c, tid)


def epoch(iso):
    # "2026-11-22T23:00:00.123Z", UTC
    main, _, frac = iso.rstrip("Z").partition(".")
    return calendar.timegm(time.strptime(main, "%Y-%m-%dT%H:%M:%S")) + float("0." + (frac or "0"))


def pages(base, outdir, query, files):
    cs = [Client(base) for _ in base.split(",")]  # one per node, in turn
    ext = "pdf" if "format=pdf" in query else "txt"
    t0 = time.monotonic()
    ids = [submit(cs[i % len(cs)], open(f, "rb").read(), query) for i, f in enumerate(files)]
    last = 0.0
    for i, (f, tid) in enumerate(zip(files, ids)):
        c = cs[i % len(cs)]
        t = wait(c, tid)
        last = max(last, epoch(t["finished_at"]))
        name = os.path.splitext(os.path.basename(f))[0]
        with open(os.path.join(outdir, "%s-%s.%s" % (name, tid[:8], ext)), "wb") as out:
            out.write(result(c, tid))
    print("%.3f %.3f" % (time.monotonic() - t0, last))


def closed_loop(base, blob, n, clients, query, via_ocr):
    def run(count):
        c = Client(base)
        for _ in range(count):
            if via_ocr:
                status, data = c.call("POST", "/v1/ocr?" + query, blob)
                if status != 200:
                    raise SystemExit("ocr: HTTP %d %s" % (status, data[:200]))
            else:
                one_task(c, blob, query)

    loadgen.closed_loop(run, n, clients)


def latency(base, blob, n, rate, query):
    pool = queue.LifoQueue()  # connections kept alive between the tasks

    def one():
        try:
            c = pool.get_nowait()
        except queue.Empty:
            c = Client(base)
        try:
            one_task(c, blob, query)
        finally:
            pool.put(c)

    loadgen.open_loop(one, n, rate)


def seq(base, blob, n, query):
    c = Client(base)
    lat = []
    for _ in range(n):
        s = time.monotonic()
        one_task(c, blob, query)
        lat.append((time.monotonic() - s) * 1000)
    lat.sort()
    print("%.1f" % lat[len(lat) // 2])


def main():
    cmd, base = sys.argv[1], sys.argv[2]
    if cmd == "pages":
        pages(base, sys.argv[3], sys.argv[4], sys.argv[5:])
        return
    blob = open(sys.argv[3], "rb").read()
    if cmd in ("rate", "ocr"):
        closed_loop(base, blob, int(sys.argv[4]), int(sys.argv[5]), sys.argv[6], cmd == "ocr")
    elif cmd == "latency":
        latency(base, blob, int(sys.argv[4]), float(sys.argv[5]), sys.argv[6])
    elif cmd == "seq":
        seq(base, blob, int(sys.argv[4]), sys.argv[5])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""bench/http_load.py: drive `ocrpool serve` over HTTP (stdlib only).

  pages BASE OUTDIR FILE...   submit every file as a task, wait for all, write
                              each txt result to OUTDIR; prints the seconds taken
  null BASE FILE N RATE       N one-page null-engine tasks; first as fast as 8
                              closed-loop clients go (tasks/s), then at RATE
                              tasks/s open loop: submit-to-result p50/p99 (ms)
"""
import json, os, sys, threading, time, urllib.request, urllib.error

def call(base, method, path, body=None):
    req = urllib.request.Request(base + path, data=body, method=method)
    while True:
        try:
            with urllib.request.urlopen(req, timeout=300) as r:
                return r.read()
        except urllib.error.HTTPError as e:
            if e.code != 429:
                raise
            time.sleep(float(e.headers.get("Retry-After", "1")))

def run_task(base, blob, query):
    tid = json.loads(call(base, "POST", "/v1/tasks?" + query, blob))["id"]
    while True:
        t = json.loads(call(base, "GET", "/v1/tasks/" + tid))
        if t["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.005)
    if t["status"] != "succeeded":
        raise SystemExit("task %s %s: %s" % (tid, t["status"], t["error"]))
    return tid

def pages(base, outdir, files):
    t0 = time.monotonic()
    ids = [json.loads(call(base, "POST", "/v1/tasks?format=txt", open(f, "rb").read()))["id"] for f in files]
    for f, tid in zip(files, ids):
        while json.loads(call(base, "GET", "/v1/tasks/" + tid))["status"] not in ("succeeded", "failed", "cancelled"):
            time.sleep(0.02)
        with open(os.path.join(outdir, os.path.basename(f) + ".txt"), "wb") as out:
            out.write(call(base, "GET", "/v1/tasks/%s/result" % tid))
    print("%.3f" % (time.monotonic() - t0))

def null(base, path, n, rate):
    blob = open(path, "rb").read()
    done = []
    lock = threading.Lock()
    def worker(count):
        for _ in range(count):
            run_task(base, blob, "engine=null")
            with lock: done.append(1)
    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(n // 8,)) for _ in range(8)]
    for t in threads: t.start()
    for t in threads: t.join()
    tps = len(done) / (time.monotonic() - t0)
    lat = []
    def one():
        s = time.monotonic()
        run_task(base, blob, "engine=null")
        with lock: lat.append((time.monotonic() - s) * 1000)
    threads = []
    for i in range(n // 2):
        threads.append(threading.Thread(target=one))
        threads[-1].start()
        time.sleep(1.0 / rate)
    for t in threads: t.join()
    lat.sort()
    print("%.1f %.1f %.1f" % (tps, lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]))

if __name__ == "__main__":
    if sys.argv[1] == "pages":
        pages(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        null(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))

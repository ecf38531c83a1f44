#!/usr/bin/env python3
"""bench/soak.py: the soak (issue 14, item 4) against a running `ocrpool serve`.

  soak.py BASE SERVER_PID DATA_DIR PAGES EVERY DOC...

With SOAK_MINUTES set, it also stops at the first sample past that many
minutes (a shorter soak, said so in its last line).

Keeps four tasks in flight, each DOC in turn with the next output format in
turn (txt, hocr, tsv, alto, json, pdf: every writer runs), until PAGES pages
have succeeded. Every task must succeed and its result must hold words (a
PDF: start with %PDF). After every EVERY pages it samples the server and each
of its workers: PSS (smaps_rollup), open file descriptors, threads, and the
data directory's size on disk. Prints the samples as a markdown table, then
each process's growth per 1,000 pages (least squares over the samples after
the first two: the start, before any worker, and the warm-up), beside the samples' noise, one line a figure.
"""
import json
import os
import sys
import time

from http_load import Client  # bench/: keep-alive, reconnects, waits out a 429

FORMATS = ["txt", "hocr", "tsv", "alto", "json", "pdf"]
IN_FLIGHT = 4


def proc_read(pid, name):
    try:
        with open("/proc/%d/%s" % (pid, name)) as f:
            return f.read()
    except OSError:
        return ""


def pss_kib(pid):
    for line in proc_read(pid, "smaps_rollup").splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def threads(pid):
    for line in proc_read(pid, "status").splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def fds(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return 0


def children(pid):
    """The server's worker processes (its direct children)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            stat = proc_read(int(d), "stat")
            if stat and int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d))
    return sorted(out)


def disk_kib(root):
    total = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    return total // 1024


def slope(xs, ys):
    """Least squares: (slope, standard deviation of the residuals)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    res = [y - (my + b * (x - mx)) for x, y in zip(xs, ys)]
    sd = (sum(r * r for r in res) / max(n - 2, 1)) ** 0.5
    return b, sd


def main():
    base, server, data_dir, pages, every = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    docs = [open(p, "rb").read() for p in sys.argv[6:]]
    c = Client(base)
    samples = []
    first_workers = None

    def sample(done):
        nonlocal first_workers
        ws = children(server)
        if first_workers is None and ws:
            first_workers = ws
        samples.append({
            "pages": done, "t": time.time(),
            "server": (pss_kib(server), fds(server), threads(server)),
            "workers": [(w, pss_kib(w), fds(w)) for w in ws],
            "disk": disk_kib(data_dir),
        })

    sample(0)
    done = submitted = 0
    flight = []  # (id, format)
    next_mark = every
    deadline = time.time() + float(os.environ["SOAK_MINUTES"]) * 60 if os.environ.get("SOAK_MINUTES") else None
    while done < pages and not (deadline and time.time() > deadline and len(samples) > 1 and samples[-1]["pages"] == done):
        while len(flight) < IN_FLIGHT:
            fmt = FORMATS[submitted % len(FORMATS)]
            status, body = c.call("POST", "/v1/tasks?format=%s" % fmt, docs[submitted % len(docs)])
            if status != 202:
                raise SystemExit("submit: HTTP %d %s" % (status, body[:200]))
            flight.append((json.loads(body)["id"], fmt))
            submitted += 1
        tid, fmt = flight[0]
        status, body = c.call("GET", "/v1/tasks/%s" % tid)
        task = json.loads(body)
        if task["status"] not in ("succeeded", "failed", "cancelled"):
            time.sleep(0.05)
            continue
        flight.pop(0)
        if task["status"] != "succeeded":
            raise SystemExit("task %s %s: %s (%s)" % (tid, task["status"], task.get("failure_reason"), task.get("error")))
        status, result = c.call("GET", "/v1/tasks/%s/result" % tid)
        good = result.startswith(b"%PDF") if fmt == "pdf" else any(len(w) > 3 and w.isalpha() for w in result.decode("utf-8", "replace").split())
        if status != 200 or not good:
            raise SystemExit("task %s: result %d, %d bytes, no words" % (tid, status, len(result)))
        done += task["pages_total"]
        if done >= next_mark:
            sample(done)
            next_mark += every
            print("soak: %d pages" % done, file=sys.stderr, flush=True)

    mib = lambda k: "%.1f" % (k / 1024)
    nw = max(len(s["workers"]) for s in samples)
    head = "| pages | minutes | server PSS MiB | server fds | server threads | " + \
        " | ".join("worker %d PSS MiB | worker %d fds" % (i + 1, i + 1) for i in range(nw)) + " | data dir MiB |"
    print(head)
    print("|" + " ---: |" * (head.count("|") - 1))
    t0 = samples[0]["t"]
    for s in samples:
        ws = s["workers"] + [(0, 0, 0)] * (nw - len(s["workers"]))
        print("| %d | %.1f | %s | %d | %d | %s | %s |" % (
            s["pages"], (s["t"] - t0) / 60, mib(s["server"][0]), s["server"][1], s["server"][2],
            " | ".join("%s | %d" % (mib(w[1]), w[2]) for w in ws), mib(s["disk"])))
    print()
    later = samples[2:] if len(samples) > 3 else samples[1:]  # not the start, nor the warm-up
    xs = [s["pages"] / 1000 for s in later]
    series = [("the server", [s["server"][0] for s in later])]
    for i in range(nw):
        series.append(("worker %d" % (i + 1), [s["workers"][i][1] if i < len(s["workers"]) else 0 for s in later]))
    for name, ys in series:
        b, sd = slope(xs, ys)
        print("- PSS growth of %s: %+.0f KiB per 1,000 pages (samples' noise: %.0f KiB, from %s to %s MiB)"
              % (name, b, sd, mib(ys[0]), mib(ys[-1])))
    last_workers = [w[0] for w in samples[-1]["workers"]]
    same = first_workers == last_workers
    print("- workers: the same %d processes from the first sample to the last: %s"
          % (len(first_workers or []), "yes" if same else "no (%s, then %s)" % (first_workers, last_workers)))
    print("- %d tasks, %d pages, in %.1f minutes%s" % (submitted, done, (samples[-1]["t"] - t0) / 60,
          "" if done >= pages else " (stopped by SOAK_MINUTES before the %d pages asked for)" % pages))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""bench/pss.py: the memory of a process tree, as ocrpool's admission counts it
(proportional set size: a library or page shared by N processes counts 1/N in
each, so the total counts it once).

  sample OUT PID [--children-only]
      every 20 ms, one line to OUT: epoch seconds, total PSS kB, total RSS kB,
      processes; over PID and all its descendants (or its descendants only);
      until OUT.stop exists or PID is gone
  peak OUT                 peak PSS kB, its time, samples, most processes at once
  series OUT T0 STEP       the largest PSS (MB) in each STEP seconds from T0
  back OUT SINCE BASE TOL  seconds from SINCE until the total is within TOL kB
                           of BASE kB and stays there ("-" if it never does)
  level OUT FROM TO        median PSS kB between two epoch times
"""
import os
import sys
import time


def rollup(pid):
    pss = rss = 0
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss = int(line.split()[1])
    except OSError:  # it exited meanwhile: counts nothing
        pass
    return pss, rss


def children(pid):
    kids = []
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                kids += [int(k) for k in f.read().split()]
    except OSError:
        pass
    return kids


def tree(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children(p)
    return out


def sample(out, pid, children_only):
    with open(out + ".tmp", "w") as f:
        while not os.path.exists(out + ".stop") and os.path.exists("/proc/%d" % pid):
            procs = tree(pid)[1 if children_only else 0:]
            pss = rss = 0
            for p in procs:
                a, b = rollup(p)
                pss, rss = pss + a, rss + b
            f.write("%.3f %d %d %d\n" % (time.time(), pss, rss, len(procs)))
            f.flush()
            if not os.path.exists(out):
                os.rename(out + ".tmp", out)  # the first sample is in: the caller may go
            time.sleep(0.02)
    if not os.path.exists(out):
        os.rename(out + ".tmp", out)


def load(out):
    return [tuple(float(x) for x in line.split()) for line in open(out) if line.strip()]


def main():
    cmd, out = sys.argv[1], sys.argv[2]
    if cmd == "sample":
        sample(out, int(sys.argv[3]), "--children-only" in sys.argv[4:])
        return
    rows = load(out)
    if cmd == "peak":
        t, pss = max(((r[0], r[1]) for r in rows), key=lambda x: x[1])
        print("%d %.3f %d %d" % (pss, t, len(rows), max(r[3] for r in rows)))
    elif cmd == "series":
        t0, step = float(sys.argv[3]), float(sys.argv[4])
        bins = {}
        for r in rows:
            if r[0] >= t0:
                k = int((r[0] - t0) / step)
                bins[k] = max(bins.get(k, 0), r[1])
        print(" ".join("%d" % (bins.get(k, 0) / 1024) for k in range(max(bins) + 1)) if bins else "")
    elif cmd == "back":
        since, base, tol = float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
        back = None
        for r in rows:
            if r[0] < since:
                continue
            if r[1] <= base + tol:
                back = r[0] if back is None else back
            else:
                back = None
        print("-" if back is None else "%.2f" % max(0.0, back - since))
    elif cmd == "level":
        lo, hi = float(sys.argv[3]), float(sys.argv[4])
        v = sorted(r[1] for r in rows if lo <= r[0] <= hi)
        print("%d" % v[len(v) // 2] if v else "-")


if __name__ == "__main__":
    main()

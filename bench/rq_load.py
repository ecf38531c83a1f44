#!/usr/bin/python3
"""bench/rq_load.py: the RQ side of bench/overhead.sh, run by Debian's python3
(python3-rq). The client does what bench/http_load.py does to ocrpool: the
1-page document goes with each job, and a job is polled every 5 ms.

  workers URL N            waits until N workers have registered
  rate URL FILE N CLIENTS  N no-op jobs from CLIENTS closed-loop clients
                           (enqueue, wait, read the result); prints jobs/s
  latency URL FILE N RATE  N jobs offered at RATE jobs/s (open loop); prints
                           enqueue-to-result p50 and p99 in ms
Every job must finish with the right result, else the exit status is 1.
"""
import os
import sys
import time

import redis
import rq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import loadgen  # noqa: E402
from rq_jobs import noop  # noqa: E402

POLL = 0.005


def one_job(q, blob):
    job = q.enqueue(noop, blob)
    while True:
        status = job.get_status(refresh=True)
        if status in ("finished", "failed", "stopped", "canceled"):
            break
        time.sleep(POLL)
    if status != "finished" or job.return_value() != len(blob):
        raise SystemExit("job %s %s" % (job.id, status))


def rate(q, blob, n, clients):
    def run(count):
        for _ in range(count):
            one_job(q, blob)

    loadgen.closed_loop(run, n, clients)


def latency(q, blob, n, per_s):
    loadgen.open_loop(lambda: one_job(q, blob), n, per_s)


def main():
    cmd, url = sys.argv[1], sys.argv[2]
    conn = redis.Redis.from_url(url)
    if cmd == "workers":
        for _ in range(600):
            if len(rq.Worker.all(connection=conn)) >= int(sys.argv[3]):
                return
            time.sleep(0.05)
        raise SystemExit("the RQ workers did not register")
    q = rq.Queue("bench", connection=conn)
    blob = open(sys.argv[3], "rb").read()
    if cmd == "rate":
        rate(q, blob, int(sys.argv[4]), int(sys.argv[5]))
    elif cmd == "latency":
        latency(q, blob, int(sys.argv[4]), float(sys.argv[5]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()

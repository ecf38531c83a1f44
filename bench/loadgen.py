"""bench/loadgen.py: the load both overhead clients offer (bench/http_load.py
to ocrpool, bench/rq_load.py to RQ), one piece of code so that both queues
are driven the same way."""
import threading
import time


def closed_loop(run, n, clients):
    """run(count) does count tasks one after another as one client; CLIENTS
    such clients share N tasks. Prints tasks/s; exits 1 if any client failed."""
    errors = []

    def client(count):
        try:
            run(count)
        except BaseException as e:  # noqa: B902 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=client, args=(n // clients,)) for _ in range(clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit("%d clients failed: %s" % (len(errors), errors[0]))
    print("%.1f" % ((n // clients) * clients / (time.monotonic() - t0)))


def open_loop(one, n, rate):
    """one() does one task; N of them are started at RATE a second, on
    schedule whatever the previous ones do. Prints the p50 and p99 of their
    times in ms; exits 1 if any failed."""
    lat, errors = [], []

    def timed():
        try:
            s = time.monotonic()
            one()
            lat.append((time.monotonic() - s) * 1000)
        except BaseException as e:  # noqa: B902 (reported below)
            errors.append(e)

    threads = []
    t0 = time.monotonic()
    for i in range(n):
        time.sleep(max(0.0, t0 + i / rate - time.monotonic()))
        threads.append(threading.Thread(target=timed))
        threads[-1].start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit("%d tasks failed: %s" % (len(errors), errors[0]))
    lat.sort()
    print("%.1f %.1f" % (lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]))

"""bench/rq_jobs.py: the job RQ's workers run in bench/overhead.sh, a no-op
(as ocrpool's null engine): it answers the size of the document it was given,
so the client can check that the job really ran."""


def noop(blob):
    return len(blob)

"""pdfgen.py: writes a PDF from its objects, for tests that make hostile PDFs.

write(path, objs, trailer=b"") lays out objs ({number: bytes}, numbered from
1 without gaps) with a correct xref table; `trailer` adds keys to the
trailer dictionary. stream(dict, body) makes a stream object.
"""


def stream(d, body):
    """A stream object: d is its dictionary without the closing >> (e.g. b"<< /Filter /FlateDecode")."""
    return d + b" /Length %d >>\nstream\n" % len(body) + body + b"\nendstream"


def write(path, objs, trailer=b""):
    out, offs = bytearray(b"%PDF-1.4\n"), {}
    for k in sorted(objs):
        offs[k] = len(out)
        out += b"%d 0 obj\n" % k + objs[k] + b"\nendobj\n"
    xref, n = len(out), max(objs) + 1
    out += b"xref\n0 %d\n0000000000 65535 f \n" % n + b"".join(b"%010d 00000 n \n" % offs[k] for k in range(1, n))
    out += b"trailer\n<< /Size %d /Root 1 0 R%s >>\nstartxref\n%d\n%%%%EOF\n" % (n, trailer, xref)
    open(path, "wb").write(out)

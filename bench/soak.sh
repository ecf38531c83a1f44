#!/usr/bin/env bash
# bench/soak.sh BUILD: the soak (issue 14, item 4; `make soak`). SOAK_PAGES
# (default 10,000) real pages through one `ocrpool serve` with recycling off
# (no recycle.* settings: the workers live from start to end), sampled every
# SOAK_EVERY (1,000) pages by bench/soak.py: the server's and each worker's
# PSS, file descriptors and threads, and the data directory on disk. The
# pages: the corpus's scans cut into strips (`mutool poster`, each a few lines
# of real text), so that 10,000 of them take minutes, not hours; every output
# format in turn. Prints the table and writes it to docs/benchmarks.md's
# "Soak" section (`make bench` keeps that section as it is).
source "$(dirname "$0")/lib.sh"

PAGES=${SOAK_PAGES:-10000}
EVERY=${SOAK_EVERY:-1000}
STRIPS=${SOAK_STRIPS:-12}

mkdir -p "$WORK/soak"
img2pdf "$DATA/8071_093.3B.tif" -o "$WORK/soak/8071.pdf"
qpdf --empty --pages "$WORK/soak/8071.pdf" "$DATA/linn.pdf" "$DATA/c02-22.pdf" "$DATA/skew.pdf" -- "$WORK/soak/src.pdf"
mutool poster -y "$STRIPS" "$WORK/soak/src.pdf" "$WORK/soak/strips.pdf"
# Two documents: all the strips as one task, and the first scan's strips alone.
qpdf --empty --pages "$WORK/soak/strips.pdf" 1-"$STRIPS" -- "$WORK/soak/first.pdf"

# Four tasks wait at most a few pages long; a machine shared with other work may stretch that past the 300 s default.
start_server "$WORK/var" --workers "$JOBS" --queue-timeout 86400
log "soak: $PAGES pages, $JOBS workers, sampled every $EVERY pages"
"$PY" "$BENCH/soak.py" "$BASE" "$SERVER_PID" "$WORK/var" "$PAGES" "$EVERY" "$WORK/soak/strips.pdf" \
  "$WORK/soak/first.pdf" >"$WORK/soak.md"
stop_server

{
  echo "## Soak: $PAGES pages through one server, recycling off"
  echo
  echo "Written by \`make soak\` (bench/soak.sh) on $(date -u +%Y-%m-%d), on $(machine); ocrpool commit"
  echo "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown), $(basename "$BUILD") build."
  echo "The corpus's four scans cut into $STRIPS strips each (real text, a few lines a page), as"
  echo "a $((4 * STRIPS))-page and a $STRIPS-page PDF in turn, four tasks in flight, the output formats in turn,"
  echo "$JOBS workers that live from start to end. Sampled after every $EVERY pages; the growth is"
  echo "a least-squares slope over the samples from the second mark on (the first is warm-up), beside"
  echo "the spread of the samples about it."
  echo
  cat "$WORK/soak.md"
  echo
} >"$WORK/section.md"
cat "$WORK/section.md"

DOC=$ROOT/docs/benchmarks.md
if [ -f "$DOC" ]; then
  # Replaces the section, or puts it before the findings.
  awk -v sect="$WORK/section.md" '
    function put() { while ((getline l < sect) > 0) print l; done = 1 }
    /^## Soak/ { skip = 1; if (!done) put(); next }
    /^## / && skip { skip = 0 }
    /^## Findings/ && !done { put() }
    !skip { print }
    END { if (!done) put() }' "$DOC" >"$WORK/doc.md"
  cp "$WORK/doc.md" "$DOC"
  log "wrote the Soak section of docs/benchmarks.md"
fi

#!/usr/bin/env bash
# bench/run.sh [BUILD]: the whole bench (see bench/README.md). Runs each part
# in turn (each also runs alone), prints their tables, and writes them to
# docs/benchmarks.md with the date, the machine, every peer's version and the
# goals met or not. BUILD: the build directory, absolute or relative to the
# repository root (default: build).
source "$(dirname "$0")/lib.sh"

ALL="throughput overhead memory scaling cluster sandbox"
PARTS=${PARTS:-$ALL}
export RUNS BENCH_GOALS=$WORK/goals BENCH_BUSY=$WORK/busy
: >"$BENCH_GOALS"
: >"$BENCH_BUSY"
start=$(date +%s)
for part in $PARTS; do
  log "part: $part"
  bash "$BENCH/$part.sh" "$BUILD" | tee "$WORK/$part.md"
done
took=$(($(date +%s) - start))
log "all parts took $((took / 60)) min $((took % 60)) s"

deb() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo "not installed"; }
versions() {
  echo "| program | version |"
  echo "| --- | --- |"
  echo "| ocrpool | $("$OCRPOOL" --version | awk '{print $NF}'), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- src CMakeLists.txt 2>/dev/null || echo ' with local changes to src'), $(basename "$BUILD") build |"
  echo "| Tesseract (library, CLI) | $(tesseract --version 2>&1 | head -1 | awk '{print $2}'), $(tesseract --version 2>&1 | awk '/leptonica/ {print $1; exit}'), Debian $(deb libtesseract5) |"
  echo "| Tesseract's English model | Debian tesseract-ocr-eng $(deb tesseract-ocr-eng) |"
  echo "| MuPDF (ocrpool's renderer; \`mutool\` for the others) | Debian $(deb libmupdf-dev), mupdf-tools $(deb mupdf-tools) |"
  echo "| OCRmyPDF | $(ocrmypdf --version 2>/dev/null), with Ghostscript $(gs --version 2>/dev/null), pikepdf $(deb python3-pikepdf), img2pdf $(deb python3-img2pdf) |"
  echo "| RQ | Debian python3-rq $(deb python3-rq), redis-py $(deb python3-redis) |"
  echo "| Redis | $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/') (Debian redis-server $(deb redis-server)) |"
  echo "| Python (clients, RQ workers) | $("$PY" --version 2>&1 | awk '{print $2}') |"
  echo "| checks: qpdf, pdftotext | $(deb qpdf), poppler $(deb poppler-utils) |"
  echo "| PostgreSQL (part 5) | Debian postgresql $(deb postgresql) |"
}

if [ "$PARTS" != "$ALL" ]; then
  log "only some parts ran: docs/benchmarks.md left as it was"
  exit 0
fi
DOC=$ROOT/docs/benchmarks.md
# The findings are written by a person after a run: kept from the last version.
findings=$(sed -n '/^## Findings/,$p' "$DOC" 2>/dev/null || true)
# So is the soak's section, which `make soak` writes (bench/soak.sh).
soak=$(awk '/^## / { on = /^## Soak/ } on' "$DOC" 2>/dev/null || true)
{
  echo "# Benchmarks"
  echo
  echo "Written by \`make bench\` (bench/run.sh; how to run each part alone: [bench/README.md](../bench/README.md))"
  echo "on $(date -u +%Y-%m-%d), on $(machine). $RUNS runs of everything, in rounds (one run of each"
  echo "contender, then the next round), \`OMP_THREAD_LIMIT=1\` everywhere; the whole run took $((took / 60)) min $((took % 60)) s."
  echo "Every figure is compared with a reference measured in the same run, on the same pages."
  while read -r b; do add busy "$b"; done <"$BENCH_BUSY"
  if has busy; then
    read -r m lo hi <<<"$(stats busy)"
    echo "Other processes on this machine kept its cores $m % busy before the rounds (median of"
    echo "$(wc -l <"$BENCH_BUSY") checks, $lo-$hi %; 50 % is one core of two)."
  fi
  echo
  versions
  echo
  echo "Every contender's output is checked (the page count, words on every page) and a run that fails"
  echo "its check is reported as FAILED, never timed."
  echo
  for part in $PARTS; do
    sed 's/^### /## /' "$WORK/$part.md"
  done
  echo "## Goals"
  echo
  cat "$BENCH_GOALS"
  echo
  if [ -n "$soak" ]; then printf '%s\n\n' "$soak"; fi
  if [ -n "$findings" ]; then echo "$findings"; else printf '## Findings\n\nNot written yet.\n'; fi
} >"$DOC"
log "wrote docs/benchmarks.md"

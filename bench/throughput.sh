#!/usr/bin/env bash
# bench/throughput.sh BUILD: part 1, OCR throughput against the machine's limit
# (a plain Tesseract API loop) and the peers, on a multi-page PDF of real scans
# and on a directory of page images. Prints two tables (markdown).
source "$(dirname "$0")/lib.sh"

make_pdf
make_images
command -v ocrmypdf >/dev/null || die "no ocrmypdf (apt-get install ocrmypdf)"

fresh() { rm -rf "$WORK/out" && mkdir -p "$WORK/out"; }

# ---- the contenders; each checks its own output ----

# The reference: one process per core, model loaded once each, pages pre-rendered.
api_loop() {
  fresh
  "$API_LOOP" -j "$JOBS" -o "$WORK/out" "$@"
  check_texts "$WORK/out" $# "the API loop"
}
ocrpool_files() {
  fresh
  "$OCRPOOL" ocr -q -j "$JOBS" -f txt -o "$WORK/out" "$@"
  check_texts "$WORK/out" $# "ocrpool ocr"
}
ocrpool_pdf() { # FORMAT
  fresh
  "$OCRPOOL" ocr -q -j "$JOBS" -f "$1" -o "$WORK/out/scans.$1" "$PDF"
  if [ "$1" = pdf ]; then
    check_pdf "$WORK/out/scans.pdf" "$NPDF" "ocrpool ocr -f pdf"
  else
    check_pages "$WORK/out/scans.txt" "$NPDF" "ocrpool ocr"
  fi
}
# A client submits every file as a task, then waits for all (server already warm).
# (The server is not this function's child: its CPU is added through cpu.more.)
http_files() {
  local c0
  fresh
  c0=$(cpu_ms "$SERVER_PID")
  "$PY" "$BENCH/http_load.py" pages "$BASE" "$WORK/out" format=txt "$@" >/dev/null
  calc "($(cpu_ms "$SERVER_PID") - $c0) / 1000" >"$WORK/cpu.more"
  check_texts "$WORK/out" $# "ocrpool serve"
}
# Process per task: the tesseract CLI once per image, JOBS at a time.
cli_files() {
  fresh
  printf '%s\n' "$@" |
    xargs -P "$JOBS" -I{} sh -c 'tesseract "$1" "$2/$(basename "$1")" >/dev/null 2>&1' _ {} "$WORK/out"
  check_texts "$WORK/out" $# "the tesseract CLI"
}
# ... and for the PDF, each task renders its page first with MuPDF's mutool, as
# ocrpool does (poppler's pdftoppm takes 1.5-3.5 s a page here, as long as the OCR).
cli_pdf() {
  fresh
  seq 1 "$NPDF" | xargs -P "$JOBS" -I{} sh -c \
    'mutool draw -q -r 300 -c gray -o "$3/p$1.png" "$2" "$1" 2>/dev/null &&
     tesseract "$3/p$1.png" "$3/p$1" >/dev/null 2>&1 && rm "$3/p$1.png"' _ {} "$PDF" "$WORK/out"
  check_texts "$WORK/out" "$NPDF" "the tesseract CLI"
}
# OCRmyPDF with its defaults (PDF/A output, optimisation -O1) but for --jobs.
ocrmypdf_default() {
  fresh
  ocrmypdf --jobs "$JOBS" "$PDF" "$WORK/out/scans.pdf" 2>"$WORK/ocrmypdf.log"
  check_pdf "$WORK/out/scans.pdf" "$NPDF" "OCRmyPDF"
}
ocrmypdf_fast() {
  fresh
  ocrmypdf --jobs "$JOBS" --output-type pdf -O0 "$PDF" "$WORK/out/scans.pdf" 2>"$WORK/ocrmypdf.log"
  check_pdf "$WORK/out/scans.pdf" "$NPDF" "OCRmyPDF -O0"
}

# A server for the HTTP rows, warmed by one page per worker so every run
# measures the steady state (a server is started once and stays up).
start_server "$WORK/var" --workers "$JOBS"
fresh
"$PY" "$BENCH/http_load.py" pages "$BASE" "$WORK/out" format=txt $(for _ in $(seq 1 "$JOBS"); do echo "$DATA/phototest.tif"; done) >/dev/null

# Rounds rather than each contender's runs back to back: a neighbour's load on
# this shared machine then weighs on every contender alike.
for r in $(seq 1 "$RUNS"); do
  log "throughput round $r of $RUNS"
  quiet
  timed pdf.api api_loop "${PDF_PAGES[@]}"
  timed pdf.ocrpool ocrpool_pdf txt
  timed pdf.http http_pdf
  timed pdf.cli cli_pdf
  timed pdf.ocrpool_pdf ocrpool_pdf pdf
  timed pdf.ocrmypdf ocrmypdf_default
  timed pdf.ocrmypdf_fast ocrmypdf_fast
  timed img.api api_loop "${IMAGES[@]}"
  timed img.ocrpool ocrpool_files "${IMAGES[@]}"
  timed img.http http_files "${IMAGES[@]}"
  timed img.cli cli_files "${IMAGES[@]}"
done
stop_server

# row KEY REF PAGES LABEL
row() {
  local pps="-"
  has "$1" && pps=$(printf '%.3f' "$(calc "$3 / $(med "$1")")")
  echo "| $4 | $(cells "$1" %.2f) | $pps | $(ratio "$1" "$2" down) | $(cells "$1.cpu" %.1f) | $(ratio "$1.cpu" "$2.cpu" down) |"
}
header() {
  echo "| contender | median s | min-max s | pages/s | ratio to reference | CPU s | min-max | CPU ratio |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
}

echo "### 1a. OCR throughput: a PDF of $NPDF real full-page scans"
echo
echo "\`scans.pdf\`: 8071_093.3B, linn, c02-22 and skew from tests/data, twice over; $JOBS workers or"
echo "processes everywhere, $RUNS runs each. Ratio: the reference's seconds over the contender's (above 1 is faster)."
echo "CPU: the CPU time of all the contender's processes (for \`ocrpool serve\`, the server's and the client's);"
echo "CPU ratio: the reference's over the contender's, steadier than the seconds when the machine is shared."
echo
header
row pdf.api pdf.api "$NPDF" "plain Tesseract C API loop, $JOBS processes, model loaded once, pages pre-rendered (reference)"
row pdf.ocrpool pdf.api "$NPDF" "\`ocrpool ocr -j $JOBS -f txt\`"
row pdf.http pdf.api "$NPDF" "\`ocrpool serve --workers $JOBS\` through HTTP, the PDF as one task"
row pdf.cli pdf.api "$NPDF" "\`mutool draw\` + \`tesseract\` CLI once per page, $JOBS at a time"
row pdf.ocrpool_pdf pdf.api "$NPDF" "\`ocrpool ocr -j $JOBS -f pdf\` (searchable PDF)"
row pdf.ocrmypdf pdf.api "$NPDF" "\`ocrmypdf --jobs $JOBS\` (defaults: PDF/A, -O1)"
row pdf.ocrmypdf_fast pdf.api "$NPDF" "\`ocrmypdf --jobs $JOBS --output-type pdf -O0\`"
echo
printf 'Searchable PDF, ocrpool against OCRmyPDF: %s x its defaults, %s x `--output-type pdf -O0`.\n' \
  "$(ratio pdf.ocrpool_pdf pdf.ocrmypdf down)" "$(ratio pdf.ocrpool_pdf pdf.ocrmypdf_fast down)"
echo
echo "### 1b. OCR throughput: a directory of $NIMAGES page images"
echo
echo "8071_093.3B.tif, linn.png, eurotext.tif, phototest.tif, baiona.png as they are, and c02-22,"
echo "skew and linn (PDF) rendered at 300 dpi grey by mutool; each image one file or task, $JOBS workers or processes."
echo
header
row img.api img.api "$NIMAGES" "plain Tesseract C API loop, $JOBS processes, model loaded once (reference)"
row img.ocrpool img.api "$NIMAGES" "\`ocrpool ocr -j $JOBS\`"
row img.http img.api "$NIMAGES" "\`ocrpool serve --workers $JOBS\` through HTTP (submit all, wait for all)"
row img.cli img.api "$NIMAGES" "\`tesseract\` CLI once per image, $JOBS at a time"
echo
echo "Goals:"
echo
by_cpu() { echo "by CPU time $(ratio "$1.cpu" "$2.cpu" down)"; }
goal "1a. \`ocrpool ocr\` against the reference, PDF" "$(ratio pdf.ocrpool pdf.api down)" ">=" 0.97 \
  "$(by_cpu pdf.ocrpool pdf.api)"
goal "1b. \`ocrpool ocr\` against the reference, images" "$(ratio img.ocrpool img.api down)" ">=" 0.97 \
  "$(by_cpu img.ocrpool img.api)"
goal "1a. \`ocrpool serve\` against the reference, PDF" "$(ratio pdf.http pdf.api down)" ">=" 0.97 \
  "$(by_cpu pdf.http pdf.api)"
goal "1b. \`ocrpool serve\` against the reference, images" "$(ratio img.http img.api down)" ">=" 0.97 \
  "$(by_cpu img.http img.api)"
goal "1a. ocrpool's searchable PDF against OCRmyPDF's defaults" "$(ratio pdf.ocrpool_pdf pdf.ocrmypdf down)" ">=" 1.45 \
  "$(by_cpu pdf.ocrpool_pdf pdf.ocrmypdf)"
goal "1a. \`ocrpool ocr\` against the \`tesseract\` CLI loop (faster), PDF" "$(ratio pdf.ocrpool pdf.cli down)" ">" 1.0 \
  "$(by_cpu pdf.ocrpool pdf.cli)"
goal "1b. \`ocrpool ocr\` against the \`tesseract\` CLI loop (faster), images" "$(ratio img.ocrpool img.cli down)" ">" 1.0 \
  "$(by_cpu img.ocrpool img.cli)"
goal "1a. \`ocrpool serve\` through HTTP against \`ocrpool ocr\` (within 3 %), PDF" "$(ratio pdf.http pdf.ocrpool down)" ">=" 0.97 \
  "$(by_cpu pdf.http pdf.ocrpool)"
goal "1b. \`ocrpool serve\` through HTTP against \`ocrpool ocr\` (within 3 %), images" "$(ratio img.http img.ocrpool down)" ">=" 0.97 \
  "$(by_cpu img.http img.ocrpool)"
echo

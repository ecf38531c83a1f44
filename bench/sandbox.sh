#!/usr/bin/env bash
# bench/sandbox.sh BUILD: part 6, what the workers' sandbox costs (issue 14:
# at most 2 % throughput). The same pages through `ocrpool ocr` and through
# `ocrpool serve` with the sandbox on and off, in alternate runs, and the
# null engine's 1-page tasks (where a worker's start and its system calls
# weigh most) through the server. Prints a table (markdown).
source "$(dirname "$0")/lib.sh"

make_pdf
make_images

fresh() { rm -rf "$WORK/out" && mkdir -p "$WORK/out"; }
ocr_pdf() { # on|off
  fresh
  "$OCRPOOL" ocr -q -j "$JOBS" --sandbox "$1" -f txt -o "$WORK/out/scans.txt" "$PDF" 2>/dev/null
  check_pages "$WORK/out/scans.txt" "$NPDF" "ocrpool ocr --sandbox $1"
}
ocr_files() { # on|off FILES...
  local mode=$1
  shift
  fresh
  "$OCRPOOL" ocr -q -j "$JOBS" --sandbox "$mode" -f txt -o "$WORK/out" "$@" 2>/dev/null
  check_texts "$WORK/out" $# "ocrpool ocr --sandbox $mode"
}

for r in $(seq 1 "$RUNS"); do
  log "sandbox round $r of $RUNS"
  quiet
  # Which goes first changes each round: a machine that speeds up or slows down within a round favours neither.
  order="on off"
  [ $((r % 2)) -eq 0 ] && order="off on"
  for mode in $order; do
    timed "pdf.$mode" ocr_pdf "$mode"
    timed "img.$mode" ocr_files "$mode" "${IMAGES[@]}"
  done
  for mode in $order; do
    start_server "$WORK/var-$mode-$r" --workers "$JOBS" --sandbox "$mode"
    timed "http.$mode" http_pdf
    stop_server
  done
done

row() { # KEY LABEL
  echo "| $2 | $(cells "$1.on" %.2f) | $(cells "$1.off" %.2f) | $(ratio "$1.on" "$1.off" down) | $(cells "$1.on.cpu" %.1f) | $(cells "$1.off.cpu" %.1f) | $(ratio "$1.on.cpu" "$1.off.cpu" down) |"
}
echo "### 6. The workers' sandbox: on against off"
echo
echo "The same pages with \`--sandbox on\` (the default: seccomp, Landlock, a network namespace, limits,"
echo "and, run as root, the \`nobody\` user) and \`--sandbox off\`, $JOBS workers, $RUNS runs each, which goes first alternating by round."
echo "Ratio: off's seconds over on's (1 = no cost; below 1 is what the sandbox costs)."
echo
echo "| pages | on: median s | min-max | off: median s | min-max | ratio | on: CPU s | min-max | off: CPU s | min-max | CPU ratio |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
row pdf "\`ocrpool ocr\`, the $NPDF-page PDF"
row img "\`ocrpool ocr\`, ${#IMAGES[@]} page images"
row http "\`ocrpool serve\` through HTTP, the $NPDF-page PDF as one task (a fresh server each run)"
echo
goal "6. throughput with the sandbox on against off, the PDF through ocrpool ocr" "$(ratio pdf.on pdf.off down)" ">=" 0.98
goal "6. throughput with the sandbox on against off, the images through ocrpool ocr" "$(ratio img.on img.off down)" ">=" 0.98
goal "6. throughput with the sandbox on against off, the PDF through ocrpool serve" "$(ratio http.on http.off down)" ">=" 0.98

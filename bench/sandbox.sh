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
  # The two modes of one kind run back to back, and which goes first changes
  # each round: a machine that speeds up or slows down (a neighbour's load)
  # weighs on both sides of a pair alike, and favours neither over the rounds.
  order="on off"
  [ $((r % 2)) -eq 0 ] && order="off on"
  for mode in $order; do timed "pdf.$mode" ocr_pdf "$mode"; done
  for mode in $order; do timed "img.$mode" ocr_files "$mode" "${IMAGES[@]}"; done
  for mode in $order; do
    start_server "$WORK/var-$mode-$r" --workers "$JOBS" --sandbox "$mode"
    timed "http.$mode" http_pdf
    stop_server
  done
done

# paired ON OFF: the median over the rounds of each round's off/on (the pair
# ran back to back); "-" when a run failed and the rounds no longer pair up.
paired() {
  has "$1" && has "$2" || {
    echo "-"
    return
  }
  local key="$1/$2" r
  VAL[$key]=""
  for r in $(paste <(printf '%s\n' ${VAL[$1]}) <(printf '%s\n' ${VAL[$2]}) | awk '$1 > 0 {print $2 / $1}'); do
    add "$key" "$r"
  done
  if [ -n "${VAL[$key]}" ]; then printf '%.3f' "$(med "$key")"; else echo "-"; fi
}

row() { # KEY LABEL
  echo "| $2 | $(cells "$1.on" %.2f) | $(cells "$1.off" %.2f) | $(ratio "$1.on" "$1.off" down) | $(paired "$1.on" "$1.off") | $(cells "$1.on.cpu" %.1f) | $(cells "$1.off.cpu" %.1f) | $(ratio "$1.on.cpu" "$1.off.cpu" down) | $(paired "$1.on.cpu" "$1.off.cpu") |"
}
echo "### 6. The workers' sandbox: on against off"
echo
echo "The same pages with \`--sandbox on\` (the default: seccomp, Landlock, a network namespace, limits,"
echo "and, run as root, the \`nobody\` user) and \`--sandbox off\`, $JOBS workers, $RUNS runs each, which goes first alternating by round."
echo "Ratio: off's median seconds over on's (1 = no cost; below 1 is what the sandbox costs). Paired ratio: the"
echo "median of each round's off over on, the two run back to back (what the goals use: it cancels the machine's drift between rounds)."
echo
echo "| pages | on: median s | min-max | off: median s | min-max | ratio | paired ratio | on: CPU s | min-max | off: CPU s | min-max | CPU ratio | paired CPU ratio |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
row pdf "\`ocrpool ocr\`, the $NPDF-page PDF"
row img "\`ocrpool ocr\`, ${#IMAGES[@]} page images"
row http "\`ocrpool serve\` through HTTP, the $NPDF-page PDF as one task (a fresh server each run)"
echo
goal "6. throughput with the sandbox on against off, the PDF through ocrpool ocr" "$(paired pdf.on pdf.off)" ">=" 0.98
goal "6. throughput with the sandbox on against off, the images through ocrpool ocr" "$(paired img.on img.off)" ">=" 0.98
goal "6. throughput with the sandbox on against off, the PDF through ocrpool serve" "$(paired http.on http.off)" ">=" 0.98

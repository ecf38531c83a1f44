#!/usr/bin/env bash
# bench/scaling.sh BUILD: part 4, pages/s of `ocrpool ocr` on the 8-page PDF
# for 1, 2 and more workers (past the cores: oversubscribed), so the curve
# shows where this machine's cores run out.
source "$(dirname "$0")/lib.sh"

make_pdf
read -r -a WORKER_COUNTS <<<"${SCALING_WORKERS:-1 2 4}"

ocr_j() {
  rm -rf "$WORK/out" && mkdir -p "$WORK/out"
  "$OCRPOOL" ocr -q -j "$1" -f txt -o "$WORK/out/scans.txt" "$PDF"
  check_pages "$WORK/out/scans.txt" "$NPDF" "ocrpool ocr -j $1"
}

for r in $(seq 1 "$RUNS"); do
  log "scaling round $r of $RUNS"
  quiet
  for j in "${WORKER_COUNTS[@]}"; do timed "j$j" ocr_j "$j"; done
done

ref=j${WORKER_COUNTS[0]}
echo "### 4. Scaling: \`ocrpool ocr -j N\` on the $NPDF-page PDF, $CORES cores"
echo
echo "$RUNS runs each. Speed-up: pages/s over the pages/s with ${WORKER_COUNTS[0]} worker; per core: the speed-up over"
echo "the cores the workers can use (min(N, $CORES)), 1.0 being perfect."
echo "CPU: the CPU time of ocrpool and its workers (ratio: over the 1-worker run's; below 1 costs more)."
echo
echo "| workers | median s | min-max s | pages/s | speed-up (ratio to ${WORKER_COUNTS[0]} worker) | per core | CPU s | min-max | CPU ratio |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for j in "${WORKER_COUNTS[@]}"; do
  pps=- eff=-
  if has "j$j"; then pps=$(printf '%.3f' "$(calc "$NPDF / $(med "j$j")")"); fi
  s=$(ratio "j$j" "$ref" down)
  if [ "$s" != - ]; then eff=$(printf '%.2f' "$(calc "$s / $((j < CORES ? j : CORES))")"); fi
  echo "| $j | $(cells "j$j" %.2f) | $pps | $s | $eff | $(cells "j$j.cpu" %.1f) | $(ratio "j$j.cpu" "$ref.cpu" down) |"
done
echo

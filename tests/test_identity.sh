#!/usr/bin/env bash
# Acceptance 1: for each single-page image in tests/data, `ocrpool ocr IMG -f txt`
# is byte-identical to `OMP_THREAD_LIMIT=1 tesseract IMG stdout` (same language,
# psm 3). Same engine, same answer: any difference is a bug.
source "$(dirname "$0")/lib.sh"

for img in "$DATA"/*.png "$DATA"/*.tif; do
  name=$(basename "$img")
  # The 81 MP page is left to the benchmark: it takes a minute and 1.3 GB.
  case $name in enormous_*) continue ;; esac
  OMP_THREAD_LIMIT=1 tesseract "$img" stdout --psm 3 -l eng >"$TMP/want.txt" 2>/dev/null
  run_ocr "$TMP/got.txt" "$TMP/err.txt" "$img" -f txt -l eng --psm 3 -j 1
  if [ "$RC" -ne 0 ]; then
    fail "$name: exit status $RC"
    cat "$TMP/err.txt"
    continue
  fi
  if cmp -s "$TMP/want.txt" "$TMP/got.txt"; then
    pass "$name: identical to the tesseract CLI ($(wc -c <"$TMP/got.txt") bytes)"
  else
    fail "$name: differs from the tesseract CLI"
    diff "$TMP/want.txt" "$TMP/got.txt" | head -20
  fi
done

# The same through a PNG copy that the sniffer must recognise without its extension.
cp "$DATA/phototest.tif" "$TMP/noext"
run_ocr "$TMP/got.txt" "$TMP/err.txt" "$TMP/noext"
OMP_THREAD_LIMIT=1 tesseract "$DATA/phototest.tif" stdout >"$TMP/want.txt" 2>/dev/null
check "type is sniffed from bytes, not the name" cmp -s "$TMP/want.txt" "$TMP/got.txt"

done_testing

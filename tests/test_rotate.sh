#!/usr/bin/env bash
# --rotate-pages: pages scanned upside down or sideways are turned upright by
# Tesseract's orientation detection before OCR, and read like the upright page.
source "$(dirname "$0")/lib.sh"

for case in phototest-rotated-180.png:180 phototest-rotated-L.png:90 phototestrot.tif:90; do
  img=${case%%:*}
  deg=${case##*:}
  run_ocr "$TMP/r.json" "$TMP/err" "$DATA/$img" --rotate-pages -f json
  check "$img: exit 0" test "$RC" -eq 0
  check "$img: turned $deg degrees" python3 -c "import json; p=json.load(open('$TMP/r.json'))['pages'][0]; assert p['rotated']==$deg, p['rotated']"
  check "$img: reads the upright text" python3 -c "import json; t=json.load(open('$TMP/r.json'))['pages'][0]['text']; assert 'quick brown dog jumped' in t, t[:200]"
done
run_ocr "$TMP/plain.txt" "$TMP/err" "$DATA/phototest-rotated-180.png"
check "without --rotate-pages the upside-down page stays unread" bash -c "! grep -q 'quick brown' '$TMP/plain.txt'"
run_ocr "$TMP/up.txt" "$TMP/err" "$DATA/phototest.tif" --rotate-pages
check "an upright page is left alone" grep -q 'quick brown dog' "$TMP/up.txt"
run_ocr "$TMP/r.pdf" "$TMP/err" "$DATA/phototest-rotated-180.png" --rotate-pages -f pdf -o "$TMP/r.pdf"
pdftotext "$TMP/r.pdf" "$TMP/r.txt"
check "a turned page's searchable PDF holds the upright text" grep -q 'quick brown' "$TMP/r.txt"
run_ocr "$TMP/out" "$TMP/err" "$DATA/phototest.tif" --rotate-pages-threshold x
check "a bad threshold is a usage error" test "$RC" -eq 2

done_testing

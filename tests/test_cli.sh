#!/usr/bin/env bash
# The command line as a user meets it: help, version, usage errors and their
# exit statuses (docs/cli.md), output files chosen by -o.
source "$(dirname "$0")/lib.sh"

"$OCRPOOL" --help >"$TMP/help" 2>&1
check "ocrpool --help exits 0 and lists ocr" test $? -eq 0 -a -n "$(grep -w ocr "$TMP/help")"
"$OCRPOOL" ocr --help >"$TMP/help" 2>&1
check "ocrpool ocr --help exits 0 and documents --rotate-pages" test $? -eq 0 -a -n "$(grep -e --rotate-pages "$TMP/help")"
"$OCRPOOL" --version >"$TMP/ver" 2>&1
check "ocrpool --version prints a version" grep -q '^ocrpool [0-9]' "$TMP/ver"

run_ocr "$TMP/out" "$TMP/err" "$DATA/phototest.tif" --psm 99
check "a bad --psm is a usage error (2)" test "$RC" -eq 2
check "the usage error names the option" grep -q -- '--psm' "$TMP/err"
run_ocr "$TMP/out" "$TMP/err" "$DATA/phototest.tif" -f docx
check "an unknown format is a usage error" test "$RC" -eq 2
check "the message names the format" grep -q docx "$TMP/err"
run_ocr "$TMP/out" "$TMP/err"
check "no input file is a usage error" test "$RC" -eq 2
run_ocr "$TMP/out" "$TMP/err" "$TMP/does-not-exist.png"
check "a missing file is bad input (3)" test "$RC" -eq 3
check "the message names the file" grep -q does-not-exist "$TMP/err"
run_ocr "$TMP/out" "$TMP/err" "$DATA/phototest.tif" -l xx_not_a_language
check "an unknown language fails the OCR (4)" test "$RC" -eq 4
check "the message says which language" grep -q xx_not_a_language "$TMP/err"

# -o with an extension picks the format; several files go to a directory.
run_ocr "$TMP/out" "$TMP/err" "$DATA/phototest.tif" -o "$TMP/photo.hocr"
check "-o x.hocr writes hOCR" grep -q "ocr_page" "$TMP/photo.hocr"
run_ocr "$TMP/out" "$TMP/err" "$DATA/phototest.tif" "$DATA/HelloGoogle.tif" -o "$TMP/dir" -f txt,json
check "several files and formats go to a directory" test -s "$TMP/dir/phototest.txt" -a -s "$TMP/dir/HelloGoogle.json"
check "each file's text is its own" grep -q Google "$TMP/dir/HelloGoogle.txt"
# Two files to stdout: texts in argument order, separated by a form feed.
run_ocr "$TMP/out" "$TMP/err" "$DATA/HelloGoogle.tif" "$DATA/phototest.tif" -j 2
check "two files to stdout: exit 0" test "$RC" -eq 0
check "two files to stdout: in argument order" test "$(tr '\f' '\n' <"$TMP/out" | grep -n -m1 Google | cut -d: -f1)" -lt "$(grep -n -m1 quick "$TMP/out" | cut -d: -f1)"
check "no scratch directory is left behind" test -z "$(ls -A "$TMPDIR")"

done_testing

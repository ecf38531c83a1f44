#!/usr/bin/env bash
# Acceptance 4: bad input gets a clear message and exit status 3, no crash, no
# core dump, and where possible it is refused by the probe before anything is
# decoded: checked by what ran (no page job) and by memory, not by a timer.
source "$(dirname "$0")/lib.sh"

expect_refused() { # NAME FILE PATTERN [ARGS...]
  local name=$1 file=$2 pattern=$3
  shift 3
  run_ocr "$TMP/out" "$TMP/err" "$file" --stats -j 1 "$@"
  check "$name: exit status 3" test "$RC" -eq 3
  check "$name: message says \"$pattern\"" grep -qi -- "$pattern" "$TMP/err"
  check "$name: message names the file" grep -qF -- "$(basename "$file")" "$TMP/err"
  check "$name: nothing on stdout" test ! -s "$TMP/out"
}
no_page_ran() { grep -q '"pages":0,' "$TMP/err"; }

: >"$TMP/empty.png"
expect_refused "zero-byte file" "$TMP/empty.png" "empty"

printf 'Just some text, not an image.\n' >"$TMP/notes.png"
expect_refused "text file" "$TMP/notes.png" "unsupported type"

head -c 3000 "$DATA/baiona.png" >"$TMP/truncated.png"
expect_refused "truncated PNG" "$TMP/truncated.png" "truncated\|corrupt\|cannot decode"

expect_refused "invalid.pdf" "$DATA/invalid.pdf" "not a valid PDF"
check "invalid.pdf: refused by the probe, no page ran" no_page_ran

expect_refused "encrypted PDF" "$DATA/encrypted.pdf" "encrypted"
check "encrypted PDF: no page ran" no_page_ran

# A PNG whose header claims 100000x100000 pixels (10 GP): the probe must refuse
# it from the header alone. Decoding would need 30 GB, so a small worker peak
# proves nothing was decoded.
python3 - "$TMP/huge.png" <<'PY'
import struct, sys, zlib
ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
idat = zlib.compress(b"\0" * 1000)
open(sys.argv[1], "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
PY
expect_refused "100000x100000 PNG" "$TMP/huge.png" "100000x100000"
check "100000x100000 PNG: the message gives the limit" grep -q "limit" "$TMP/err"
check "100000x100000 PNG: no page ran" no_page_ran
check "100000x100000 PNG: worker peak under 200 MB (nothing decoded)" \
  test "$(grep -o '"worker_peak_rss_kb":[0-9]*' "$TMP/err" | cut -d: -f2)" -lt 200000

expect_refused "page count over the limit" "$DATA/multipage.pdf" "over the limit of 3" --max-pages 3
check "page count over the limit: no page ran" no_page_ran

# An 81 MP page against a 50 MP limit: refused before rendering, naming the page.
expect_refused "page over the pixel limit" "$DATA/enormous.pdf" "page 1 .*9000x9000" --max-page-pixels 50000000
check "page over the pixel limit: no page ran" no_page_ran

expect_refused "file over --max-input-size" "$DATA/linn.pdf" "over the limit" --max-input-size 10K

# One bad file among good ones: the good one is still done, the status says bad input.
run_ocr "$TMP/out" "$TMP/err" "$DATA/invalid.pdf" "$DATA/phototest.tif" -j 1
check "a bad file among good ones: exit 3" test "$RC" -eq 3
check "a bad file among good ones: the good one's text is out" grep -q "quick brown" "$TMP/out"

done_testing

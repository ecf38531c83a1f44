#!/usr/bin/env bash
# Acceptance 2: a multi-page PDF gives one result per page, in page order, in
# every format: the pdf opens in pdftotext and holds the text, hocr and alto are
# well-formed XML, json parses and its word boxes lie inside their pages.
source "$(dirname "$0")/lib.sh"

# Three real pages whose text tells them apart: linn, c02-22, linn again.
qpdf --empty --pages "$DATA/linn.pdf" "$DATA/c02-22.pdf" "$DATA/linn.pdf" -- "$TMP/three.pdf"
run_ocr "$TMP/stdout" "$TMP/err" "$TMP/three.pdf" -f txt,hocr,tsv,alto,json,pdf -o "$TMP/out" -j 2
check "OCR of a 3-page PDF in all formats exits 0" test "$RC" -eq 0
[ "$RC" -eq 0 ] || cat "$TMP/err"
for ext in txt hocr tsv xml json pdf; do
  check "the $ext result exists" test -s "$TMP/out.$ext"
done

# txt: pages separated by form feeds, in page order.
check "txt: 3 pages, 2 form feeds" test "$(tr -cd '\f' <"$TMP/out.txt" | wc -c)" -eq 2
awk 'BEGIN{RS="\f"} {print > ("'"$TMP"'/page" NR ".txt")}' "$TMP/out.txt"
check "txt: page 1 is linn (Linn words)" grep -qi 'linn' "$TMP/page1.txt"
check "txt: page 2 is not linn" bash -c "! grep -qi 'linn' '$TMP/page2.txt'"
check "txt: page 3 is linn again" grep -qi 'linn' "$TMP/page3.txt"

# hocr and alto: well-formed, three pages in order.
check "hocr is well-formed XML" xmllint --noout "$TMP/out.hocr"
check "hocr: pages 1, 2, 3 in order" test "$(grep -o "id='page_[0-9]*'" "$TMP/out.hocr" | tr -d "\n")" = "id='page_1'id='page_2'id='page_3'"
check "alto is well-formed XML" xmllint --noout "$TMP/out.xml"
check "alto: three Page elements" test "$(grep -o '<Page ' "$TMP/out.xml" | wc -l)" -eq 3

# tsv: one header, page numbers 1..3 non-decreasing.
check "tsv: one header line" test "$(grep -c '^level' "$TMP/out.tsv")" -eq 1
check "tsv: pages 1, 2, 3 in order" test "$(awk -F'\t' 'NR>1 && $2!=p {printf "%s", $2; p=$2}' "$TMP/out.tsv")" = "123"

# json: parses, three pages in order, every word box inside its page.
cat >"$TMP/check.py" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
pages = doc["pages"]
assert [p["page"] for p in pages] == [1, 2, 3], [p.get("page") for p in pages]
words = 0
for p in pages:
    W, H = p["width"], p["height"]
    assert W > 0 and H > 0
    for b in p["blocks"]:
        for l in b["lines"]:
            for w in l["words"]:
                x0, y0, x1, y1 = w["bbox"]
                assert 0 <= x0 <= x1 <= W and 0 <= y0 <= y1 <= H, (p["page"], w)
                assert 0 <= w["conf"] <= 100
                words += 1
assert words > 100, words
print("words", words)
PY
check "json: parses, pages in order, word boxes inside their pages" python3 "$TMP/check.py" "$TMP/out.json"

# pdf: a searchable PDF of three pages holding the text.
check "pdf: three pages" test "$(pdfinfo "$TMP/out.pdf" | awk '/^Pages:/ {print $2}')" = 3
pdftotext -f 1 -l 1 "$TMP/out.pdf" "$TMP/pdf1.txt"
pdftotext -f 2 -l 2 "$TMP/out.pdf" "$TMP/pdf2.txt"
check "pdf: page 1's text layer is linn" grep -qi 'linn' "$TMP/pdf1.txt"
check "pdf: page 2's text layer is not linn" bash -c "! grep -qi 'linn' '$TMP/pdf2.txt' && test -s '$TMP/pdf2.txt'"

# A multi-page TIFF gives the same text as the tesseract CLI, form feeds included.
tiffcp "$DATA/phototest.tif" "$DATA/HelloGoogle.tif" "$TMP/two.tif"
run_ocr "$TMP/two.txt" "$TMP/err" "$TMP/two.tif" -j 2
OMP_THREAD_LIMIT=1 tesseract "$TMP/two.tif" stdout >"$TMP/two.want" 2>/dev/null
check "2-page TIFF: identical to the tesseract CLI" cmp -s "$TMP/two.txt" "$TMP/two.want"

# --pages picks pages; a PDF at 2400 dpi renders at 300, not at its images' dpi.
run_ocr "$TMP/p2.json" "$TMP/err" "$TMP/three.pdf" --pages 2 -f json
check "--pages 2 gives page 2 only" python3 -c "import json,sys; d=json.load(open('$TMP/p2.json')); assert [p['page'] for p in d['pages']]==[2]"
run_ocr "$TMP/hi.json" "$TMP/err" "$DATA/2400dpi.pdf" -f json --engine null
check "2400dpi.pdf renders at 300 dpi (small page)" python3 -c "import json; p=json.load(open('$TMP/hi.json'))['pages'][0]; assert p['width']*p['height'] < 4000*2864, p"

done_testing

/*
 * test_doc.c: sniffing, page sets, the probe, the page reader and the PDF
 * merge, on the real files in tests/data and on documents built at run time
 * in /tmp (a 2-page TIFF, a JPEG, a truncated PNG, a PNG header claiming
 * 100000x100000 pixels, a PDF claiming two billion pages). Run from the
 * repository root.
 */
#include <leptonica/allheaders.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "check.h"
#include "doc/doc.h"
#include "doc/image_internal.h"

static void test_sniff(void) {
  static const unsigned char png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0};
  static const unsigned char jpeg[] = {0xff, 0xd8, 0xff, 0xe0, 0, 0, 0, 0};
  CHECK(op_doc_sniff(png, 8) == OP_DOC_PNG);
  CHECK(op_doc_sniff(png, 7) == OP_DOC_UNKNOWN);
  CHECK(op_doc_sniff(jpeg, 8) == OP_DOC_JPEG);
  CHECK(op_doc_sniff((const unsigned char *)"II*\0abcd", 8) == OP_DOC_TIFF);
  CHECK(op_doc_sniff((const unsigned char *)"MM\0*abcd", 8) == OP_DOC_TIFF);
  CHECK(op_doc_sniff((const unsigned char *)"%PDF-1.7\n", 9) == OP_DOC_PDF);
  CHECK(op_doc_sniff((const unsigned char *)"junk\r\n%PDF-1.4", 15) == OP_DOC_PDF);
  CHECK(op_doc_sniff((const unsigned char *)"Hello, world", 12) == OP_DOC_UNKNOWN);

  op_doc_type_t type;
  uint64_t size;
  op_error_t e;
  CHECK(op_doc_sniff_file("tests/data/linn.pdf", &type, &size, &e) == 0 && type == OP_DOC_PDF && size > 1000);
  CHECK(op_doc_sniff_file("tests/data/phototest.tif", &type, NULL, &e) == 0 && type == OP_DOC_TIFF);
  CHECK(op_doc_sniff_file("tests/data/MANIFEST.md", &type, NULL, &e) == OP_EUNSUPPORTED);
  CHECK(strstr(e.message, "unsupported type") != NULL);
  FILE *f = fopen("/tmp/ocrpool-unit-empty", "w");
  fclose(f);
  CHECK(op_doc_sniff_file("/tmp/ocrpool-unit-empty", &type, NULL, &e) == OP_EBADINPUT);
  CHECK_STR_EQ(e.message, "the file is empty (0 bytes)");
  remove("/tmp/ocrpool-unit-empty");
  CHECK(op_doc_sniff_file("/nonexistent/x.png", &type, NULL, &e) == OP_EBADINPUT);
  CHECK(op_doc_sniff_file("tests/data", &type, NULL, &e) == OP_EBADINPUT);
  CHECK(op_doc_sniff_file("tests/data/HelloGoogle.tif", &type, &size, &e) == 0 && type == OP_DOC_TIFF);
  CHECK(op_doc_sniff_file("tests/data/baiona.png", &type, NULL, &e) == 0 && type == OP_DOC_PNG);
  CHECK(op_doc_sniff_file("tests/data/invalid.pdf", &type, &size, &e) == 0 && type == OP_DOC_PDF && size == 44);
  unsigned char late[1100];
  memset(late, ' ', sizeof late);
  memcpy(late + 1018, "%PDF-", 5);
  CHECK(op_doc_sniff(late, sizeof late) == OP_DOC_PDF); /* starts within the first 1024 bytes */
  memcpy(late + 1018, "     ", 5);
  memcpy(late + 1030, "%PDF-", 5);
  CHECK(op_doc_sniff(late, sizeof late) == OP_DOC_UNKNOWN);
  for (int t = OP_DOC_PNG; t <= OP_DOC_PDF; t++)
    CHECK(op_doc_type_from_name(op_doc_type_name((op_doc_type_t)t)) == (op_doc_type_t)t);
  CHECK_STR_EQ(op_doc_type_name(OP_DOC_UNKNOWN), "unknown");
  CHECK_STR_EQ(op_doc_type_name(OP_DOC_JPEG), "jpeg");
  CHECK(op_doc_type_from_name("tiff") == OP_DOC_TIFF && op_doc_type_from_name("gif") == OP_DOC_UNKNOWN);
}

static void test_page_sets(void) {
  op_page_set_t set;
  op_error_t e;
  uint32_t *idx;
  size_t n;
  CHECK(op_page_set_parse("7, 1-3,10-", &set, &e) == 0 && set.count == 3);
  CHECK(op_page_set_resolve(&set, 12, &idx, &n, &e) == 0);
  uint32_t want[] = {0, 1, 2, 6, 9, 10, 11};
  CHECK(n == 7 && memcmp(idx, want, sizeof want) == 0);
  free(idx);
  /* Overlaps count once; ranges past the end are cut. */
  op_page_set_dispose(&set);
  CHECK(op_page_set_parse("2-4,3-9", &set, &e) == 0);
  CHECK(op_page_set_resolve(&set, 5, &idx, &n, &e) == 0 && n == 4 && idx[0] == 1 && idx[3] == 4);
  free(idx);
  op_page_set_dispose(&set);
  CHECK(op_page_set_parse("9-12", &set, &e) == 0);
  CHECK(op_page_set_resolve(&set, 6, &idx, &n, &e) == OP_EUSAGE && idx == NULL);
  CHECK_STR_EQ(e.message, "--pages 9-12 selects no page of a 6-page document");
  op_page_set_dispose(&set);
  /* Parsed sets are sorted and merged: overlapping, adjacent and open ranges fold together. */
  CHECK(op_page_set_parse(" 5 , 1 - 2,3,8-, 10-12 ", &set, &e) == 0 && set.count == 3);
  CHECK(set.count == 3 && set.ranges[0].first == 1 && set.ranges[0].last == 3 && set.ranges[1].first == 5 &&
        set.ranges[1].last == 5 && set.ranges[2].first == 8 && set.ranges[2].last == 0);
  CHECK(op_page_set_resolve(&set, 9, &idx, &n, &e) == 0 && n == 6 && idx[3] == 4 && idx[5] == 8);
  free(idx);
  op_page_set_dispose(&set);
  /* Selecting a few pages of a huge document allocates for those pages only. */
  CHECK(op_page_set_parse("5,1-3", &set, &e) == 0);
  CHECK(op_page_set_resolve(&set, 4000000000u, &idx, &n, &e) == 0 && n == 4 && idx[3] == 4);
  free(idx);
  op_page_set_dispose(&set);
  CHECK(op_page_set_parse("2-", &set, &e) == 0);
  CHECK(op_page_set_resolve(&set, 1, &idx, &n, &e) == OP_EUSAGE);
  CHECK_STR_EQ(e.message, "--pages 2- selects no page of a 1-page document");
  op_page_set_dispose(&set);
  CHECK(op_page_set_parse("   ", &set, &e) == 0 && set.ranges == NULL && set.count == 0);
  CHECK(op_page_set_parse("4-2", &set, &e) == OP_EUSAGE && strstr(e.message, "backwards") != NULL);
  CHECK(strstr(e.message, "bad --pages value \"4-2\"") != NULL);
  CHECK(op_page_set_parse(NULL, &set, &e) == 0 && set.ranges == NULL);
  CHECK(op_page_set_resolve(&set, 3, &idx, &n, &e) == 0 && n == 3);
  free(idx);
  const char *bad[] = {"0", "3-1", "a", "1,,2", "1-2-3", "-5", "1;2", ",", "1,", "99999999999", "2-x"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    CHECK(op_page_set_parse(bad[i], &set, &e) == OP_EUSAGE);
    CHECK(strstr(e.message, "bad --pages value") != NULL);
    CHECK(set.ranges == NULL);
  }
}

/* A PNG of a header claiming w x h pixels and no real data. */
static void write_fake_png(const char *path, uint32_t w, uint32_t h) {
  unsigned char buf[64];
  static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  unsigned char chunk[4 + 4 + 13 + 4] = {0, 0, 0, 13, 'I', 'H', 'D', 'R'};
  unsigned char *d = chunk + 8;
  d[0] = (unsigned char)(w >> 24), d[1] = (unsigned char)(w >> 16), d[2] = (unsigned char)(w >> 8),
  d[3] = (unsigned char)w;
  d[4] = (unsigned char)(h >> 24), d[5] = (unsigned char)(h >> 16), d[6] = (unsigned char)(h >> 8),
  d[7] = (unsigned char)h;
  d[8] = 8, d[9] = 2, d[10] = 0, d[11] = 0, d[12] = 0;
  uLong crc = crc32(0, chunk + 4, 17);
  chunk[21] = (unsigned char)(crc >> 24), chunk[22] = (unsigned char)(crc >> 16), chunk[23] = (unsigned char)(crc >> 8),
  chunk[24] = (unsigned char)crc;
  static const unsigned char iend[12] = {0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xae, 0x42, 0x60, 0x82};
  memcpy(buf, sig, 8);
  memcpy(buf + 8, chunk, sizeof chunk);
  memcpy(buf + 8 + sizeof chunk, iend, sizeof iend);
  FILE *f = fopen(path, "wb");
  fwrite(buf, 1, 8 + sizeof chunk + sizeof iend, f);
  fclose(f);
}

/* Copies the first `keep` bytes of src to dst (keep = 0: half of the file). */
static void write_truncated(const char *src, const char *dst, size_t keep) {
  FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
  if (in == NULL || out == NULL)
    goto out;
  fseek(in, 0, SEEK_END);
  long size = ftell(in);
  rewind(in);
  if (keep == 0)
    keep = (size_t)size / 2;
  char buf[4096];
  while (keep > 0) {
    size_t n = fread(buf, 1, keep < sizeof buf ? keep : sizeof buf, in);
    if (n == 0)
      break;
    fwrite(buf, 1, n, out);
    keep -= n;
  }
out:
  if (in)
    fclose(in);
  if (out)
    fclose(out);
}

/* A 2-page TIFF: phototest (1 bpp, 640x480) then a 300x200 8-bpp gray page. */
static int write_two_page_tiff(const char *path) {
  PIX *p1 = pixRead("tests/data/phototest.tif");
  PIX *p2 = pixCreate(300, 200, 8);
  int ok = p1 != NULL && p2 != NULL;
  if (ok) {
    pixSetAllArbitrary(p2, 200);
    pixSetResolution(p2, 150, 150);
    ok = pixWriteTiff(path, p1, IFF_TIFF_G4, "w") == 0 && pixWriteTiff(path, p2, IFF_TIFF_ZIP, "a") == 0;
  }
  pixDestroy(&p1);
  pixDestroy(&p2);
  return ok;
}

/* A 320x240 gray JPEG at 96 dpi. */
static int write_jpeg(const char *path) {
  PIX *src = pixRead("tests/data/phototest.tif");
  PIX *gray = src ? pixConvertTo8(src, 0) : NULL;
  PIX *small = gray ? pixScale(gray, 0.5f, 0.5f) : NULL;
  int ok = small != NULL;
  if (ok) {
    pixSetResolution(small, 96, 96);
    ok = pixWriteJpeg(path, small, 90, 0) == 0;
  }
  pixDestroy(&src);
  pixDestroy(&gray);
  pixDestroy(&small);
  return ok;
}

/*
 * A valid, tiny PDF whose page tree claims `count` pages (it holds one): a
 * document's own claim must not size any allocation before --max-pages.
 */
static void write_lying_pdf(const char *path, const char *count) {
  char body[1024], objs[3][160];
  snprintf(objs[0], sizeof objs[0], "1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n");
  snprintf(objs[1], sizeof objs[1], "2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count %s >>\nendobj\n", count);
  snprintf(objs[2], sizeof objs[2], "3 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>\nendobj\n");
  size_t off[3], at = (size_t)snprintf(body, sizeof body, "%%PDF-1.4\n");
  for (int i = 0; i < 3; i++) {
    off[i] = at;
    at += (size_t)snprintf(body + at, sizeof body - at, "%s", objs[i]);
  }
  size_t xref = at;
  at += (size_t)snprintf(body + at, sizeof body - at, "xref\n0 4\n0000000000 65535 f \n");
  for (int i = 0; i < 3; i++)
    at += (size_t)snprintf(body + at, sizeof body - at, "%010zu 00000 n \n", off[i]);
  at += (size_t)snprintf(body + at, sizeof body - at, "trailer\n<< /Size 4 /Root 1 0 R >>\nstartxref\n%zu\n%%%%EOF\n",
                         xref);
  FILE *f = fopen(path, "wb");
  fwrite(body, 1, at, f);
  fclose(f);
}

static void test_probe(void) {
  op_doc_limits_t lim;
  op_doc_limits_init(&lim);
  CHECK(lim.max_input_bytes == 256ull * 1024 * 1024 && lim.max_pages == 2000 && lim.max_page_pixels == 250000000u &&
        lim.dpi == 300);
  op_doc_probe_t p;
  op_error_t e;

  CHECK(op_doc_probe("tests/data/phototest.tif", NULL, &lim, &p, &e) == 0);
  CHECK(p.type == OP_DOC_TIFF && p.page_count == 1 && p.n_pages == 1);
  CHECK(p.n_pages == 1 && p.pages[0].width_px == 640 && p.pages[0].height_px == 480 && p.pages[0].depth == 1 &&
        p.pages[0].xres == 200);
  op_doc_probe_dispose(&p);

  /* A 2-page TIFF, page by page, and a selection of its second page. */
  CHECK(write_two_page_tiff("/tmp/ocrpool-unit-2p.tif"));
  CHECK(op_doc_probe("/tmp/ocrpool-unit-2p.tif", NULL, &lim, &p, &e) == 0);
  CHECK(p.page_count == 2 && p.n_pages == 2);
  CHECK(p.n_pages == 2 && p.pages[0].width_px == 640 && p.pages[0].height_px == 480 && p.pages[0].depth == 1);
  CHECK(p.n_pages == 2 && p.pages[1].index == 1 && p.pages[1].width_px == 300 && p.pages[1].height_px == 200 &&
        p.pages[1].depth == 8 && p.pages[1].xres == 150);
  op_doc_probe_dispose(&p);
  op_page_set_t set;
  CHECK(op_page_set_parse("2-", &set, &e) == 0);
  CHECK(op_doc_probe("/tmp/ocrpool-unit-2p.tif", &set, &lim, &p, &e) == 0 && p.n_pages == 1 && p.pages[0].index == 1 &&
        p.pages[0].width_px == 300);
  op_doc_probe_dispose(&p);
  op_page_set_dispose(&set);

  /* PNG and JPEG: size, depth and declared resolution from the header. */
  CHECK(op_doc_probe("tests/data/phototest-rotated-L.png", NULL, &lim, &p, &e) == 0);
  CHECK(p.type == OP_DOC_PNG && p.page_count == 1 && p.n_pages == 1 && p.pages[0].width_px == 480 &&
        p.pages[0].height_px == 640 && p.pages[0].xres == 200 && p.pages[0].depth == 1); /* 1-bit palette */
  op_doc_probe_dispose(&p);
  CHECK(write_jpeg("/tmp/ocrpool-unit.jpg"));
  op_doc_type_t type;
  CHECK(op_doc_sniff_file("/tmp/ocrpool-unit.jpg", &type, NULL, &e) == 0 && type == OP_DOC_JPEG);
  CHECK(op_doc_probe("/tmp/ocrpool-unit.jpg", NULL, &lim, &p, &e) == 0);
  CHECK(p.type == OP_DOC_JPEG && p.n_pages == 1 && p.pages[0].width_px == 320 && p.pages[0].height_px == 240 &&
        p.pages[0].depth == 8 && p.pages[0].xres == 96);
  op_doc_probe_dispose(&p);

  /* multipage.pdf: every page measured from its box at 300 dpi, /Rotate included (page 6). */
  CHECK(op_doc_probe("tests/data/multipage.pdf", NULL, &lim, &p, &e) == 0);
  CHECK(p.type == OP_DOC_PDF && p.page_count == 6 && p.n_pages == 6);
  static const uint32_t mp_sizes[6][2] = {{1600, 1962}, {9000, 9000}, {2994, 1250},
                                          {2994, 1250}, {2550, 3300}, {3300, 2550}};
  for (size_t i = 0; i < p.n_pages && i < 6; i++) {
    CHECK(p.pages[i].index == i && p.pages[i].width_px == mp_sizes[i][0] && p.pages[i].height_px == mp_sizes[i][1]);
    CHECK(p.pages[i].xres == 300 && p.pages[i].yres == 300 && p.pages[i].depth == 8);
  }
  op_doc_probe_dispose(&p);

  /* 2400dpi.pdf holds a 4000x2864 image on a small page: measured at 300 dpi, not 2400. */
  CHECK(op_doc_probe("tests/data/2400dpi.pdf", NULL, &lim, &p, &e) == 0);
  CHECK(p.n_pages == 1 && p.pages[0].width_px == 500 && p.pages[0].height_px == 358);
  op_doc_probe_dispose(&p);

  CHECK(op_page_set_parse("2,5", &set, &e) == 0);
  CHECK(op_doc_probe("tests/data/multipage.pdf", &set, &lim, &p, &e) == 0 && p.n_pages == 2);
  CHECK(p.n_pages == 2 && p.pages[0].index == 1 && p.pages[1].index == 4);
  op_doc_probe_dispose(&p);
  op_page_set_dispose(&set);
  CHECK(op_page_set_parse("9-12", &set, &e) == 0);
  CHECK(op_doc_probe("tests/data/multipage.pdf", &set, &lim, &p, &e) == OP_EUSAGE);
  CHECK_STR_EQ(e.message, "--pages 9-12 selects no page of a 6-page document");
  op_doc_probe_dispose(&p);
  op_page_set_dispose(&set);

  /* Limits: pixels per page (named page, size, dpi and limit), then the page count. */
  op_doc_limits_t small = lim;
  small.max_page_pixels = 50000000;
  CHECK(op_doc_probe("tests/data/enormous.pdf", NULL, &small, &p, &e) == OP_ELIMIT);
  CHECK(strstr(e.message,
               "page 1 would be 9000x9000 pixels (81.0 MP) at 300 dpi, over the limit of 50.0 MP per page") != NULL);
  CHECK(strstr(e.message, "--max-page-pixels") != NULL);
  CHECK_STR_EQ(e.reason, "bad_input");
  op_doc_probe_dispose(&p);
  CHECK(op_doc_probe("tests/data/enormous.pdf", NULL, &lim, &p, &e) == 0); /* 81 MP is under the default */
  op_doc_probe_dispose(&p);
  small = lim;
  small.max_pages = 3;
  CHECK(op_doc_probe("tests/data/multipage.pdf", NULL, &small, &p, &e) == OP_ELIMIT);
  CHECK(strstr(e.message, "document has 6 pages to OCR, over the limit of 3 (--max-pages)") != NULL);
  op_doc_probe_dispose(&p);
  CHECK(op_page_set_parse("1,3-4", &set, &e) == 0);
  CHECK(op_doc_probe("tests/data/multipage.pdf", &set, &small, &p, &e) == 0 && p.n_pages == 3);
  op_doc_probe_dispose(&p);
  op_page_set_dispose(&set);

  /* A PDF claiming two billion pages is refused by the count, before anything is sized by the claim. */
  write_lying_pdf("/tmp/ocrpool-unit-lying.pdf", "2000000000");
  CHECK(op_doc_probe("/tmp/ocrpool-unit-lying.pdf", NULL, &lim, &p, &e) == OP_ELIMIT);
  CHECK(strstr(e.message, "2000000000 pages") != NULL);
  op_doc_probe_dispose(&p);
  CHECK(op_page_set_parse("1", &set, &e) == 0);
  CHECK(op_doc_probe("/tmp/ocrpool-unit-lying.pdf", &set, &lim, &p, &e) == 0 && p.n_pages == 1 &&
        p.pages[0].width_px == 2550 && p.pages[0].height_px == 3300);
  op_doc_probe_dispose(&p);
  op_page_set_dispose(&set);
  remove("/tmp/ocrpool-unit-lying.pdf");

  /* Malformed and encrypted PDFs: clean errors, no exception escapes. */
  CHECK(op_doc_probe("tests/data/invalid.pdf", NULL, &lim, &p, &e) == OP_EBADINPUT);
  CHECK(strncmp(e.message, "not a valid PDF: ", 17) == 0 && strlen(e.message) > 17);
  op_doc_probe_dispose(&p);
  const char *encrypted = "tests/data/encrypted.pdf";
  if (access(encrypted, R_OK) != 0) {
    encrypted = "/tmp/ocrpool-unit-encrypted.pdf";
    CHECK(system("qpdf --encrypt u o 256 -- tests/data/linn.pdf /tmp/ocrpool-unit-encrypted.pdf") == 0);
  }
  CHECK(op_doc_probe(encrypted, NULL, &lim, &p, &e) == OP_EBADINPUT);
  CHECK(strstr(e.message, "encrypted PDF: it needs a password") != NULL);
  op_doc_probe_dispose(&p);

  /* A PNG header claiming 100000x100000 is refused at the default limit without decoding. */
  write_fake_png("/tmp/ocrpool-unit-huge.png", 100000, 100000);
  CHECK(op_doc_probe("/tmp/ocrpool-unit-huge.png", NULL, &lim, &p, &e) == OP_ELIMIT);
  CHECK(strstr(e.message, "page 1 is 100000x100000 pixels (10000.0 MP), over the limit of 250.0 MP per page") != NULL);
  op_doc_probe_dispose(&p);

  /* Empty and unsupported files. */
  FILE *f = fopen("/tmp/ocrpool-unit-empty.pdf", "w");
  fclose(f);
  CHECK(op_doc_probe("/tmp/ocrpool-unit-empty.pdf", NULL, &lim, &p, &e) == OP_EBADINPUT);
  op_doc_probe_dispose(&p);
  remove("/tmp/ocrpool-unit-empty.pdf");
  CHECK(op_doc_probe("tests/data/MANIFEST.md", NULL, &lim, &p, &e) == OP_EUNSUPPORTED);
  op_doc_probe_dispose(&p);
}

static void test_reader(void) {
  op_doc_reader_t *r = op_doc_reader_create();
  CHECK(r != NULL);
  struct Pix *pix = NULL;
  op_error_t e;
  op_doc_limits_t lim;
  op_doc_limits_init(&lim);
  l_int32 xres = 0, yres = 0;

  /* Images: the pixels and resolution tesseract itself would read. */
  CHECK(op_doc_reader_load_page(r, "tests/data/phototest.tif", OP_DOC_TIFF, 0, 300, lim.max_page_pixels, &pix, &e) ==
        0);
  CHECK(pix && pixGetWidth(pix) == 640 && pixGetHeight(pix) == 480 && pixGetDepth(pix) == 1);
  PIX *ref = pixRead("tests/data/phototest.tif");
  l_int32 same = 0;
  CHECK(pix && ref && pixEqual(pix, ref, &same) == 0 && same);
  pixDestroy(&ref);
  pixDestroy(&pix);
  CHECK(op_doc_reader_load_page(r, "/tmp/ocrpool-unit-2p.tif", OP_DOC_TIFF, 1, 300, lim.max_page_pixels, &pix, &e) ==
        0);
  CHECK(pix && pixGetWidth(pix) == 300 && pixGetHeight(pix) == 200 && pixGetDepth(pix) == 8);
  pixDestroy(&pix);
  CHECK(op_doc_reader_load_page(r, "/tmp/ocrpool-unit-2p.tif", OP_DOC_TIFF, 2, 300, lim.max_page_pixels, &pix, &e) ==
        OP_EBADINPUT);
  CHECK(pix == NULL && strstr(e.message, "page 3") != NULL);
  CHECK(op_doc_reader_load_page(r, "/tmp/ocrpool-unit-2p.tif", OP_DOC_TIFF, 0, 300, 1000, &pix, &e) == OP_ELIMIT);
  CHECK(pix == NULL);
  CHECK(op_doc_reader_load_page(r, "/tmp/ocrpool-unit.jpg", OP_DOC_JPEG, 0, 300, lim.max_page_pixels, &pix, &e) == 0);
  CHECK(pix && pixGetWidth(pix) == 320 && pixGetHeight(pix) == 240 && pixGetDepth(pix) == 8);
  if (pix)
    pixGetResolution(pix, &xres, &yres);
  CHECK(xres == 96 && yres == 96);
  pixDestroy(&pix);
  CHECK(op_doc_reader_load_page(r, "/tmp/ocrpool-unit.jpg", OP_DOC_JPEG, 1, 300, lim.max_page_pixels, &pix, &e) ==
        OP_EBADINPUT);
  CHECK(op_doc_reader_load_page(r, "tests/data/baiona.png", OP_DOC_PNG, 0, 300, lim.max_page_pixels, &pix, &e) == 0);
  CHECK(pix && pixGetWidth(pix) == 640 && pixGetHeight(pix) == 682);
  pixDestroy(&pix);
  CHECK(op_doc_reader_load_page(r, "/tmp/ocrpool-unit-huge.png", OP_DOC_PNG, 0, 300, lim.max_page_pixels, &pix, &e) ==
        OP_ELIMIT);
  CHECK(pix == NULL);
  remove("/tmp/ocrpool-unit-huge.png");

  /* A PDF page: rendered 8-bit gray at the asked dpi, the size the probe announced. */
  op_doc_probe_t p;
  CHECK(op_doc_probe("tests/data/multipage.pdf", NULL, &lim, &p, &e) == 0);
  for (uint32_t i = 0; i < p.n_pages; i++) {
    if (i == 1)
      continue; /* the 81 MP page: measured above, too slow to render in a unit test */
    CHECK(op_doc_reader_load_page(r, "tests/data/multipage.pdf", OP_DOC_PDF, i, 300, lim.max_page_pixels, &pix, &e) ==
          0);
    xres = yres = 0;
    if (pix)
      pixGetResolution(pix, &xres, &yres);
    CHECK(pix && pixGetDepth(pix) == 8 && xres == 300 && yres == 300 && pixGetColormap(pix) == NULL);
    CHECK(pix && (uint32_t)pixGetWidth(pix) == p.pages[i].width_px &&
          (uint32_t)pixGetHeight(pix) == p.pages[i].height_px);
    pixDestroy(&pix);
  }
  op_doc_probe_dispose(&p);
  /* Another dpi, and a page that is not blank (the JBIG2 scan of linn.pdf). */
  CHECK(op_doc_reader_load_page(r, "tests/data/linn.pdf", OP_DOC_PDF, 0, 150, lim.max_page_pixels, &pix, &e) == 0);
  CHECK(pix && pixGetWidth(pix) == 1275 && pixGetHeight(pix) == 1650);
  if (pix) {
    pixGetResolution(pix, &xres, &yres);
    NUMA *hist = pixGetGrayHistogram(pix, 1);
    l_float32 dark = 0, light = 0;
    numaGetSumOnInterval(hist, 0, 63, &dark);
    numaGetSumOnInterval(hist, 192, 255, &light);
    CHECK(dark > 1000 && light > dark);
    numaDestroy(&hist);
  }
  CHECK(xres == 150 && yres == 150);
  pixDestroy(&pix);

  /* Refusals: over the limit before rendering, past the end, encrypted, broken. */
  CHECK(op_doc_reader_load_page(r, "tests/data/enormous.pdf", OP_DOC_PDF, 0, 300, 50000000u, &pix, &e) == OP_ELIMIT);
  CHECK(pix == NULL && strstr(e.message, "page 1") != NULL);
  CHECK(op_doc_reader_load_page(r, "tests/data/linn.pdf", OP_DOC_PDF, 1, 300, lim.max_page_pixels, &pix, &e) ==
        OP_EBADINPUT);
  const char *encrypted =
      access("tests/data/encrypted.pdf", R_OK) == 0 ? "tests/data/encrypted.pdf" : "/tmp/ocrpool-unit-encrypted.pdf";
  for (int twice = 0; twice < 2; twice++) {
    CHECK(op_doc_reader_load_page(r, encrypted, OP_DOC_PDF, 0, 300, lim.max_page_pixels, &pix, &e) == OP_EBADINPUT);
    CHECK(pix == NULL && strstr(e.message, "encrypted") != NULL);
  }
  remove("/tmp/ocrpool-unit-encrypted.pdf");
  CHECK(op_doc_reader_load_page(r, "tests/data/invalid.pdf", OP_DOC_PDF, 0, 300, lim.max_page_pixels, &pix, &e) ==
        OP_EBADINPUT);
  CHECK(pix == NULL);
  /* The reader still works after failures. */
  CHECK(op_doc_reader_load_page(r, "tests/data/c02-22.pdf", OP_DOC_PDF, 0, 300, lim.max_page_pixels, &pix, &e) == 0);
  CHECK(pix && pixGetWidth(pix) == 1600 && pixGetHeight(pix) == 1962);
  pixDestroy(&pix);

  /* A truncated PNG fails cleanly. */
  write_truncated("tests/data/baiona.png", "/tmp/ocrpool-unit-trunc.png", 0);
  CHECK(op_doc_reader_load_page(r, "/tmp/ocrpool-unit-trunc.png", OP_DOC_PNG, 0, 300, lim.max_page_pixels, &pix, &e) ==
        OP_EBADINPUT);
  CHECK(pix == NULL);
  CHECK_STR_EQ(e.message, "page 1: cannot decode the png image (truncated or corrupt)");
  remove("/tmp/ocrpool-unit-trunc.png");
  /* A truncated TIFF too: its header may still read, its pixels do not. */
  write_truncated("tests/data/eurotext.tif", "/tmp/ocrpool-unit-trunc.tif", 600);
  CHECK(op_doc_reader_load_page(r, "/tmp/ocrpool-unit-trunc.tif", OP_DOC_TIFF, 0, 300, lim.max_page_pixels, &pix, &e) ==
        OP_EBADINPUT);
  CHECK(pix == NULL);
  remove("/tmp/ocrpool-unit-trunc.tif");
  remove("/tmp/ocrpool-unit-2p.tif");
  remove("/tmp/ocrpool-unit.jpg");
  op_doc_reader_destroy(r);
  op_doc_reader_destroy(NULL);
}

static void test_merge(void) {
  op_error_t e;
  op_doc_limits_t lim;
  op_doc_limits_init(&lim);
  op_doc_probe_t p;
  const char *two[] = {"tests/data/linn.pdf", "tests/data/c02-22.pdf"};
  CHECK(op_doc_pdf_merge(two, 2, "/tmp/ocrpool-unit-merged.pdf", &e) == 0);
  CHECK(op_doc_probe("/tmp/ocrpool-unit-merged.pdf", NULL, &lim, &p, &e) == 0 && p.page_count == 2);
  CHECK(p.n_pages == 2 && p.pages[0].width_px == 2550 && p.pages[1].width_px == 1600);
  op_doc_probe_dispose(&p);
  /* Multi-page inputs keep their order: 1 + 6 + 1 pages. */
  const char *three[] = {"tests/data/c02-22.pdf", "tests/data/multipage.pdf", "/tmp/ocrpool-unit-merged.pdf"};
  CHECK(op_doc_pdf_merge(three, 3, "/tmp/ocrpool-unit-merged3.pdf", &e) == 0);
  CHECK(op_doc_probe("/tmp/ocrpool-unit-merged3.pdf", NULL, &lim, &p, &e) == 0 && p.page_count == 9);
  CHECK(p.n_pages == 9 && p.pages[2].width_px == 9000 && p.pages[6].width_px == 3300 && p.pages[7].width_px == 2550);
  op_doc_probe_dispose(&p);
  remove("/tmp/ocrpool-unit-merged.pdf");
  remove("/tmp/ocrpool-unit-merged3.pdf");
  const char *bad[] = {"tests/data/linn.pdf", "tests/data/invalid.pdf"};
  CHECK(op_doc_pdf_merge(bad, 2, "/tmp/ocrpool-unit-merged.pdf", &e) < 0);
  CHECK(strstr(e.message, "invalid.pdf") != NULL);
  CHECK(op_doc_pdf_merge(two, 2, "/nonexistent/dir/out.pdf", &e) == OP_EIO);
}

static long file_bytes(const char *path, unsigned char **out) {
  FILE *f = fopen(path, "rb");
  long n = -1;
  if (f != NULL && fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0 &&
      (*out = malloc((size_t)n)) != NULL && fread(*out, 1, (size_t)n, f) != (size_t)n) {
    free(*out);
    n = -1;
  }
  if (f != NULL)
    fclose(f);
  return n;
}

/* The structure walks (structure.c): the same TIFF headers as Leptonica
 * reads page by page, JPEG scans counted, and hostile files refused. */
static void test_structure(void) {
  static const char *const tiffs[] = {"tests/data/phototest.tif", "tests/data/eurotext.tif",
                                      "tests/data/HelloGoogle.tif", "tests/data/8071_093.3B.tif",
                                      "tests/data/deslant.tif", "tests/data/phototestrot.tif",
                                      "/tmp/ocrpool-unit-2p.tif"};
  for (size_t k = 0; k < sizeof tiffs / sizeof tiffs[0]; k++) {
    FILE *fp = fopen(tiffs[k], "rb");
    op__tiff_page_t *pages = NULL;
    uint32_t n = 0;
    const char *why;
    l_int32 count = 0;
    CHECK(fp != NULL && op__tiff_pages(fp, OP__TIFF_MAX_IFDS, &pages, &n, &why) == 0);
    CHECK(fp != NULL && tiffGetCount(fp, &count) == 0 && (uint32_t)count == n);
    for (uint32_t i = 0; fp != NULL && i < n; i++) {
      l_int32 w, h, bps, spp, res, cmap, format;
      CHECK(freadHeaderTiff(fp, (l_int32)i, &w, &h, &bps, &spp, &res, &cmap, &format) == 0);
      CHECK(pages[i].width == (uint32_t)w && pages[i].height == (uint32_t)h);
      CHECK(pages[i].depth == (uint32_t)(bps * spp) && pages[i].xres == res);
      if (pages[i].xres != res)
        fprintf(stderr, "%s page %u: res %d, Leptonica %d\n", tiffs[k], i + 1, pages[i].xres, res);
    }
    free(pages);
    if (fp != NULL)
      fclose(fp);
  }

  /* A TIFF whose page list points back at itself: refused, not walked for ever. */
  unsigned char *b = NULL;
  long len = file_bytes("tests/data/phototest.tif", &b);
  CHECK(len > 8 && b[0] == 'I');
  op_doc_limits_t lim;
  op_doc_limits_init(&lim);
  op_doc_probe_t p;
  op_error_t e;
  if (len > 8 && b[0] == 'I') {
    uint32_t ifd = (uint32_t)b[4] | (uint32_t)b[5] << 8 | (uint32_t)b[6] << 16 | (uint32_t)b[7] << 24;
    uint32_t entries = (uint32_t)b[ifd] | (uint32_t)b[ifd + 1] << 8, next = ifd + 2 + entries * 12;
    for (int i = 0; i < 4; i++)
      b[next + (uint32_t)i] = (unsigned char)(ifd >> (8 * i));
    FILE *f = fopen("/tmp/ocrpool-unit-loop.tif", "wb");
    CHECK(f != NULL && fwrite(b, 1, (size_t)len, f) == (size_t)len);
    if (f != NULL)
      fclose(f);
    CHECK(op_doc_probe("/tmp/ocrpool-unit-loop.tif", NULL, &lim, &p, &e) == OP_EBADINPUT);
    CHECK(strstr(e.message, "loops") != NULL);
    op_doc_probe_dispose(&p);
    remove("/tmp/ocrpool-unit-loop.tif");
  }
  free(b);

  /* A real progressive JPEG has a few scans; one of 20,000 is refused by the probe. */
  PIX *src = pixRead("tests/data/phototest.tif");
  CHECK(src != NULL && pixWriteJpeg("/tmp/ocrpool-unit-prog.jpg", src, 75, 1) == 0);
  pixDestroy(&src);
  FILE *fp = fopen("/tmp/ocrpool-unit-prog.jpg", "rb");
  unsigned scans = 0;
  CHECK(fp != NULL && op__jpeg_count_scans(fp, OP__JPEG_MAX_SCANS, &scans) == 0 && scans > 1 && scans <= 20);
  if (fp != NULL)
    fclose(fp);
  CHECK(op_doc_probe("/tmp/ocrpool-unit-prog.jpg", NULL, &lim, &p, &e) == 0 && p.n_pages == 1);
  op_doc_probe_dispose(&p);
  len = file_bytes("/tmp/ocrpool-unit-prog.jpg", &b);
  FILE *bomb = fopen("/tmp/ocrpool-unit-scans.jpg", "wb");
  CHECK(len > 4 && bomb != NULL);
  if (len > 4 && bomb != NULL) {
    /* Its own header and first scans, then 20,000 more tiny scans before the end. */
    long cut = len - 2; /* before EOI */
    fwrite(b, 1, (size_t)cut, bomb);
    static const unsigned char sos[] = {0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3F, 0x00, 0x00};
    for (int i = 0; i < 20000; i++)
      fwrite(sos, 1, sizeof sos, bomb);
    fwrite("\xFF\xD9", 1, 2, bomb);
  }
  if (bomb != NULL)
    fclose(bomb);
  free(b);
  CHECK(op_doc_probe("/tmp/ocrpool-unit-scans.jpg", NULL, &lim, &p, &e) == OP_ELIMIT);
  CHECK(strstr(e.message, "scans") != NULL);
  op_doc_probe_dispose(&p);
  remove("/tmp/ocrpool-unit-prog.jpg");
  remove("/tmp/ocrpool-unit-scans.jpg");
}

int main(void) {
  setMsgSeverity(L_SEVERITY_NONE); /* as workers run: failures are asserted, not printed */
  test_sniff();
  test_page_sets();
  test_probe();
  test_structure();
  test_reader();
  test_merge();
  return CHECK_DONE();
}

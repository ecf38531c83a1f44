/* test_doc.c: sniffing, page sets, the probe and the page reader on real files in tests/data. */
#include <leptonica/allheaders.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "check.h"
#include "doc/doc.h"

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
  CHECK(strstr(e.message, "empty") != NULL);
  remove("/tmp/ocrpool-unit-empty");
  CHECK(op_doc_sniff_file("/nonexistent/x.png", &type, NULL, &e) == OP_EBADINPUT);
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
  CHECK(op_page_set_resolve(&set, 6, &idx, &n, &e) == OP_EUSAGE);
  CHECK(strstr(e.message, "6-page") != NULL);
  op_page_set_dispose(&set);
  CHECK(op_page_set_parse(NULL, &set, &e) == 0 && set.ranges == NULL);
  CHECK(op_page_set_resolve(&set, 3, &idx, &n, &e) == 0 && n == 3);
  free(idx);
  const char *bad[] = {"0", "3-1", "a", "1,,2", "1-2-3", "-5", "1;2"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    CHECK(op_page_set_parse(bad[i], &set, &e) == OP_EUSAGE);
    CHECK(strstr(e.message, "--pages") != NULL);
  }
}

/* A PNG of a header claiming w x h pixels and no real data. */
static void write_fake_png(const char *path, uint32_t w, uint32_t h) {
  unsigned char buf[64];
  static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  unsigned char chunk[4 + 4 + 13 + 4] = {0, 0, 0, 13, 'I', 'H', 'D', 'R'};
  unsigned char *d = chunk + 8;
  d[0] = (unsigned char)(w >> 24), d[1] = (unsigned char)(w >> 16), d[2] = (unsigned char)(w >> 8), d[3] = (unsigned char)w;
  d[4] = (unsigned char)(h >> 24), d[5] = (unsigned char)(h >> 16), d[6] = (unsigned char)(h >> 8), d[7] = (unsigned char)h;
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

static void test_probe(void) {
  op_doc_limits_t lim;
  op_doc_limits_init(&lim);
  CHECK(lim.max_pages == 2000 && lim.max_page_pixels == 250000000u && lim.dpi == 300);
  op_doc_probe_t p;
  op_error_t e;

  CHECK(op_doc_probe("tests/data/phototest.tif", NULL, &lim, &p, &e) == 0);
  CHECK(p.type == OP_DOC_TIFF && p.page_count == 1 && p.n_pages == 1);
  CHECK(p.pages[0].width_px == 640 && p.pages[0].height_px == 480 && p.pages[0].depth == 1);
  op_doc_probe_dispose(&p);

  CHECK(op_doc_probe("tests/data/multipage.pdf", NULL, &lim, &p, &e) == 0);
  CHECK(p.type == OP_DOC_PDF && p.page_count == 6 && p.n_pages == 6);
  int has_huge = 0;
  for (size_t i = 0; i < p.n_pages; i++)
    has_huge |= p.pages[i].width_px == 9000 && p.pages[i].height_px == 9000;
  CHECK(has_huge); /* the 30-inch page is 9000x9000 at 300 dpi */
  op_doc_probe_dispose(&p);

  /* 2400dpi.pdf holds a 4000x2864 image on a small page: measured at 300 dpi, not 2400. */
  CHECK(op_doc_probe("tests/data/2400dpi.pdf", NULL, &lim, &p, &e) == 0);
  CHECK(p.n_pages == 1 && p.pages[0].width_px == 500 && p.pages[0].height_px == 358);
  op_doc_probe_dispose(&p);

  op_page_set_t set;
  CHECK(op_page_set_parse("2,5", &set, &e) == 0);
  CHECK(op_doc_probe("tests/data/multipage.pdf", &set, &lim, &p, &e) == 0 && p.n_pages == 2);
  CHECK(p.pages[0].index == 1 && p.pages[1].index == 4);
  op_doc_probe_dispose(&p);
  op_page_set_dispose(&set);

  op_doc_limits_t small = lim;
  small.max_page_pixels = 50000000;
  CHECK(op_doc_probe("tests/data/enormous.pdf", NULL, &small, &p, &e) == OP_ELIMIT);
  CHECK(strstr(e.message, "page 1") && strstr(e.message, "9000x9000") && strstr(e.message, "50.0 MP"));
  op_doc_probe_dispose(&p);
  small = lim;
  small.max_pages = 3;
  CHECK(op_doc_probe("tests/data/multipage.pdf", NULL, &small, &p, &e) == OP_ELIMIT);
  CHECK(strstr(e.message, "6 pages") && strstr(e.message, "limit of 3"));
  op_doc_probe_dispose(&p);

  CHECK(op_doc_probe("tests/data/invalid.pdf", NULL, &lim, &p, &e) == OP_EBADINPUT);
  CHECK(strstr(e.message, "not a valid PDF") != NULL);
  op_doc_probe_dispose(&p);
  CHECK(op_doc_probe("tests/data/encrypted.pdf", NULL, &lim, &p, &e) == OP_EBADINPUT);
  CHECK(strstr(e.message, "encrypted") != NULL);
  op_doc_probe_dispose(&p);

  write_fake_png("/tmp/ocrpool-unit-huge.png", 100000, 100000);
  CHECK(op_doc_probe("/tmp/ocrpool-unit-huge.png", NULL, &lim, &p, &e) == OP_ELIMIT);
  CHECK(strstr(e.message, "100000x100000") && strstr(e.message, "10000.0 MP"));
  op_doc_probe_dispose(&p);
  remove("/tmp/ocrpool-unit-huge.png");
}

static void test_reader(void) {
  op_doc_reader_t *r = op_doc_reader_create();
  CHECK(r != NULL);
  struct Pix *pix = NULL;
  op_error_t e;
  CHECK(op_doc_reader_load_page(r, "tests/data/phototest.tif", OP_DOC_TIFF, 0, 300, 250000000u, &pix, &e) == 0);
  CHECK(pix && pixGetWidth(pix) == 640 && pixGetHeight(pix) == 480);
  pixDestroy(&pix);
  /* A PDF page: rendered 8-bit gray at the asked dpi, the size the probe announced. */
  op_doc_limits_t lim;
  op_doc_limits_init(&lim);
  lim.dpi = 150;
  op_doc_probe_t p;
  CHECK(op_doc_probe("tests/data/linn.pdf", NULL, &lim, &p, &e) == 0);
  CHECK(op_doc_reader_load_page(r, "tests/data/linn.pdf", OP_DOC_PDF, 0, 150, 250000000u, &pix, &e) == 0);
  l_int32 xres = 0, yres = 0;
  pixGetResolution(pix, &xres, &yres);
  CHECK(pix && pixGetDepth(pix) == 8 && xres == 150 && yres == 150);
  CHECK(pix && (uint32_t)pixGetWidth(pix) == p.pages[0].width_px && (uint32_t)pixGetHeight(pix) == p.pages[0].height_px);
  pixDestroy(&pix);
  op_doc_probe_dispose(&p);
  /* The reader refuses a page over the limit before rendering it. */
  CHECK(op_doc_reader_load_page(r, "tests/data/enormous.pdf", OP_DOC_PDF, 0, 300, 50000000u, &pix, &e) == OP_ELIMIT);
  CHECK(pix == NULL);
  /* A truncated PNG fails cleanly. */
  FILE *in = fopen("tests/data/baiona.png", "rb"), *out = fopen("/tmp/ocrpool-unit-trunc.png", "wb");
  char buf[3000];
  size_t n = fread(buf, 1, sizeof buf, in);
  fwrite(buf, 1, n, out);
  fclose(in);
  fclose(out);
  CHECK(op_doc_reader_load_page(r, "/tmp/ocrpool-unit-trunc.png", OP_DOC_PNG, 0, 300, 250000000u, &pix, &e) ==
        OP_EBADINPUT);
  CHECK(pix == NULL && strstr(e.message, "cannot decode") != NULL);
  remove("/tmp/ocrpool-unit-trunc.png");
  op_doc_reader_destroy(r);
}

static void test_merge(void) {
  const char *inputs[] = {"tests/data/linn.pdf", "tests/data/c02-22.pdf", "tests/data/linn.pdf"};
  op_error_t e;
  CHECK(op_doc_pdf_merge(inputs, 3, "/tmp/ocrpool-unit-merged.pdf", &e) == 0);
  op_doc_limits_t lim;
  op_doc_limits_init(&lim);
  op_doc_probe_t p;
  CHECK(op_doc_probe("/tmp/ocrpool-unit-merged.pdf", NULL, &lim, &p, &e) == 0 && p.page_count == 3);
  op_doc_probe_dispose(&p);
  remove("/tmp/ocrpool-unit-merged.pdf");
  const char *bad[] = {"tests/data/invalid.pdf"};
  CHECK(op_doc_pdf_merge(bad, 1, "/tmp/ocrpool-unit-merged.pdf", &e) < 0);
}

int main(void) {
  test_sniff();
  test_page_sets();
  test_probe();
  test_reader();
  test_merge();
  return CHECK_DONE();
}

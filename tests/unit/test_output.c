/* test_output.c: format names and the assembly of page fragments into one result. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "doc/doc.h"

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  fputs(text, f);
  fclose(f);
}

static char *assemble(op_format_t fmt, const char *const *files, const char *const *errors, size_t n) {
  uint32_t numbers[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  char *buf = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&buf, &len);
  op_error_t e;
  int rc = op_output_assemble(fmt, files, errors, numbers, n, "a <doc> & \"title\"", out, &e);
  fclose(out);
  if (rc < 0) {
    free(buf);
    return NULL;
  }
  return buf;
}

static void test_formats(void) {
  unsigned mask;
  op_error_t e;
  CHECK(op_format_parse("txt,hocr,pdf", &mask, &e) == 0 && mask == (OP_FMT_TXT | OP_FMT_HOCR | OP_FMT_PDF));
  CHECK(op_format_parse("alto,json,tsv", &mask, &e) == 0 && mask == (OP_FMT_ALTO | OP_FMT_JSON | OP_FMT_TSV));
  CHECK(op_format_parse("txt,docx", &mask, &e) == OP_EUSAGE && strstr(e.message, "docx"));
  /* The message lists what would have worked. */
  CHECK(strstr(e.message, "txt") && strstr(e.message, "alto") && strstr(e.message, "pdf"));
  CHECK(op_format_parse("txt,,pdf", &mask, &e) == OP_EUSAGE);
  CHECK(op_format_parse("", &mask, &e) == OP_EUSAGE);
  CHECK(op_format_from_name("xml") == OP_FMT_ALTO && op_format_from_name("html") == OP_FMT_HOCR);
  CHECK(op_format_from_name("PDF") == OP_FMT_PDF && op_format_from_name("doc") == 0);
  CHECK_STR_EQ(op_format_ext(OP_FMT_ALTO), "xml");
  CHECK_STR_EQ(op_format_content_type(OP_FMT_JSON), "application/json");
  /* Every format's name parses back, and so does its extension. */
  for (unsigned f = 1; f <= OP_FMT_PDF; f <<= 1) {
    CHECK(op_format_from_name(op_format_name((op_format_t)f)) == f);
    CHECK(op_format_from_name(op_format_ext((op_format_t)f)) == f);
    CHECK(strlen(op_format_content_type((op_format_t)f)) > 0);
  }
  CHECK_STR_EQ(op_format_ext(OP_FMT_HOCR), "hocr");
  CHECK_STR_EQ(op_format_name(OP_FMT_ALTO), "alto");
  CHECK_STR_EQ(op_format_content_type(OP_FMT_PDF), "application/pdf");
}

static void test_assembly(void) {
  write_file("/tmp/ocrpool-unit-p1.txt", "page one\n");
  write_file("/tmp/ocrpool-unit-p3.txt", "page three\n");
  const char *txt[] = {"/tmp/ocrpool-unit-p1.txt", NULL, "/tmp/ocrpool-unit-p3.txt"};
  const char *errors[] = {NULL, "the page crashed \"its\" worker", NULL};
  char *s = assemble(OP_FMT_TXT, txt, errors, 3);
  /* Form feeds between pages, none after the last, as the tesseract CLI. */
  CHECK_STR_EQ(s, "page one\n\f\fpage three\n");
  free(s);

  write_file("/tmp/ocrpool-unit-p1.json", "{\"page\":1,\"text\":\"a\"}");
  write_file("/tmp/ocrpool-unit-p3.json", "{\"page\":3,\"text\":\"c\"}\n");
  const char *json[] = {"/tmp/ocrpool-unit-p1.json", NULL, "/tmp/ocrpool-unit-p3.json"};
  s = assemble(OP_FMT_JSON, json, errors, 3);
  json_error_t je;
  json_t *doc = s ? json_loads(s, 0, &je) : NULL;
  CHECK(doc != NULL && json_array_size(json_object_get(doc, "pages")) == 3);
  json_t *failed = json_array_get(json_object_get(doc, "pages"), 1);
  CHECK(json_integer_value(json_object_get(failed, "page")) == 2);
  CHECK_STR_EQ(json_string_value(json_object_get(failed, "error")), "the page crashed \"its\" worker");
  json_decref(doc);
  free(s);

  write_file("/tmp/ocrpool-unit-p1.hocr", "  <div class='ocr_page' id='page_1' title='bbox 0 0 10 10'>\n  </div>\n");
  const char *hocr[] = {"/tmp/ocrpool-unit-p1.hocr"};
  s = assemble(OP_FMT_HOCR, hocr, NULL, 1);
  CHECK(s && strstr(s, "<title>a &lt;doc&gt; &amp; &quot;title&quot;</title>") && strstr(s, "</html>"));
  write_file("/tmp/ocrpool-unit-doc.hocr", s ? s : "");
  CHECK(system("xmllint --noout /tmp/ocrpool-unit-doc.hocr") == 0);
  free(s);

  write_file("/tmp/ocrpool-unit-p1.xml",
             "\t\t<Page WIDTH=\"10\" HEIGHT=\"10\" PHYSICAL_IMG_NR=\"0\" ID=\"page_0\"></Page>\n");
  const char *alto[] = {"/tmp/ocrpool-unit-p1.xml"};
  s = assemble(OP_FMT_ALTO, alto, NULL, 1);
  write_file("/tmp/ocrpool-unit-doc.xml", s ? s : "");
  CHECK(s && system("xmllint --noout /tmp/ocrpool-unit-doc.xml") == 0);
  free(s);

  write_file("/tmp/ocrpool-unit-p1.tsv", "1\t1\t0\t0\t0\t0\t0\t0\t10\t10\t-1\t\n");
  const char *tsv[] = {"/tmp/ocrpool-unit-p1.tsv", "/tmp/ocrpool-unit-p1.tsv"};
  s = assemble(OP_FMT_TSV, tsv, NULL, 2);
  CHECK(s && strncmp(s, "level\tpage_num\t", 15) == 0 && strstr(s + 1, "level") == NULL);
  free(s);

  /* A failed page leaves a gap that keeps hOCR and ALTO well-formed. */
  const char *hocr_gap[] = {"/tmp/ocrpool-unit-p1.hocr", NULL, "/tmp/ocrpool-unit-p1.hocr"};
  s = assemble(OP_FMT_HOCR, hocr_gap, errors, 3);
  write_file("/tmp/ocrpool-unit-doc.hocr", s ? s : "");
  CHECK(s && system("xmllint --noout /tmp/ocrpool-unit-doc.hocr") == 0);
  free(s);
  const char *alto_gap[] = {NULL, "/tmp/ocrpool-unit-p1.xml"};
  s = assemble(OP_FMT_ALTO, alto_gap, errors, 2);
  write_file("/tmp/ocrpool-unit-doc.xml", s ? s : "");
  CHECK(s && system("xmllint --noout /tmp/ocrpool-unit-doc.xml") == 0);
  free(s);
  const char *tsv_gap[] = {NULL, "/tmp/ocrpool-unit-p1.tsv"};
  s = assemble(OP_FMT_TSV, tsv_gap, errors, 2);
  CHECK_STR_EQ(s, "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n"
                  "1\t1\t0\t0\t0\t0\t0\t0\t10\t10\t-1\t\n");
  free(s);
  /* Only failed pages: still a document. */
  const char *none[] = {NULL, NULL};
  s = assemble(OP_FMT_TXT, none, NULL, 2);
  CHECK_STR_EQ(s, "\f");
  free(s);
  s = assemble(OP_FMT_JSON, none, NULL, 2);
  doc = s ? json_loads(s, 0, &je) : NULL;
  CHECK(doc != NULL && json_array_size(json_object_get(doc, "pages")) == 2);
  json_decref(doc);
  free(s);

  /* A fragment that should exist and does not is an error, not a silent gap. */
  const char *missing[] = {"/tmp/ocrpool-unit-none.txt"};
  CHECK(assemble(OP_FMT_TXT, missing, NULL, 1) == NULL);
  CHECK(assemble(OP_FMT_PDF, txt, NULL, 1) == NULL);
  const char *tmp[] = {"p1.txt", "p3.txt", "p1.json", "p3.json", "p1.hocr", "doc.hocr", "p1.xml", "doc.xml", "p1.tsv"};
  for (size_t i = 0; i < sizeof tmp / sizeof tmp[0]; i++) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/ocrpool-unit-%s", tmp[i]);
    remove(path);
  }
}

int main(void) {
  test_formats();
  test_assembly();
  return CHECK_DONE();
}

/*
 * output.c: result formats, and a document's result assembled from its
 * pages' fragments.
 *
 * Workers write one fragment per page and format; this file joins them in
 * page order, streaming with a fixed buffer, so a 2,000-page result is never
 * held in memory. Headers and footers follow Tesseract's own renderers, so a
 * document's hOCR, ALTO and TSV read as the tesseract CLI's would.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <tesseract/capi.h>

#include "doc/doc.h"

/* The build defines it; a file compiled on its own still builds. */
#ifndef OCRPOOL_VERSION
#define OCRPOOL_VERSION "dev"
#endif

static const struct {
  op_format_t fmt;
  const char *name, *ext, *content_type;
} formats[] = {
    {OP_FMT_TXT, "txt", "txt", "text/plain; charset=utf-8"},
    {OP_FMT_HOCR, "hocr", "hocr", "application/xhtml+xml; charset=utf-8"},
    {OP_FMT_TSV, "tsv", "tsv", "text/tab-separated-values; charset=utf-8"},
    {OP_FMT_ALTO, "alto", "xml", "application/xml; charset=utf-8"},
    {OP_FMT_JSON, "json", "json", "application/json"},
    {OP_FMT_PDF, "pdf", "pdf", "application/pdf"},
};
#define N_FORMATS (sizeof formats / sizeof formats[0])

op_format_t op_format_from_name(const char *name) {
  for (size_t i = 0; i < N_FORMATS; i++)
    if (strcasecmp(name, formats[i].name) == 0 || strcasecmp(name, formats[i].ext) == 0)
      return formats[i].fmt;
  if (strcasecmp(name, "text") == 0)
    return OP_FMT_TXT;
  if (strcasecmp(name, "html") == 0)
    return OP_FMT_HOCR;
  return 0;
}

const char *op_format_name(op_format_t fmt) {
  for (size_t i = 0; i < N_FORMATS; i++)
    if (formats[i].fmt == fmt)
      return formats[i].name;
  return "unknown";
}

const char *op_format_ext(op_format_t fmt) {
  for (size_t i = 0; i < N_FORMATS; i++)
    if (formats[i].fmt == fmt)
      return formats[i].ext;
  return "bin";
}

const char *op_format_content_type(op_format_t fmt) {
  for (size_t i = 0; i < N_FORMATS; i++)
    if (formats[i].fmt == fmt)
      return formats[i].content_type;
  return "application/octet-stream";
}

int op_format_parse(const char *list, unsigned *mask, op_error_t *err) {
  *mask = 0;
  char word[32];
  const char *p = list;
  while (*p != '\0') {
    size_t len = strcspn(p, ",");
    if (len == 0 || len >= sizeof word)
      goto bad;
    memcpy(word, p, len);
    word[len] = '\0';
    op_format_t f = op_format_from_name(word);
    if (f == 0)
      return op_error_set(err, OP_EUSAGE, "bad_options",
                          "unknown format \"%s\" (known: txt, hocr, tsv, alto, json, pdf)", word);
    *mask |= f;
    p += len;
    if (*p == ',')
      p++;
  }
  if (*mask != 0)
    return 0;
bad:
  return op_error_set(err, OP_EUSAGE, "bad_options", "bad format list \"%s\" (known: txt, hocr, tsv, alto, json, pdf)",
                      list);
}

/* Writes s with XML's five special characters escaped. */
static void put_xml_escaped(FILE *out, const char *s) {
  for (; *s; s++) {
    switch (*s) {
    case '&':
      fputs("&amp;", out);
      break;
    case '<':
      fputs("&lt;", out);
      break;
    case '>':
      fputs("&gt;", out);
      break;
    case '"':
      fputs("&quot;", out);
      break;
    case '\'':
      fputs("&#39;", out);
      break;
    default:
      fputc(*s, out);
    }
  }
}

/* Writes s as a JSON string literal. */
static void put_json_string(FILE *out, const char *s) {
  fputc('"', out);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\')
      fprintf(out, "\\%c", c);
    else if (c < 0x20)
      fprintf(out, "\\u%04x", c);
    else
      fputc(c, out);
  }
  fputc('"', out);
}

static void write_header(op_format_t fmt, const char *title, FILE *out) {
  switch (fmt) {
  case OP_FMT_HOCR:
    fputs("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
          "<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Transitional//EN\"\n"
          "    \"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd\">\n"
          "<html xmlns=\"http://www.w3.org/1999/xhtml\" xml:lang=\"en\" lang=\"en\">\n"
          " <head>\n  <title>",
          out);
    put_xml_escaped(out, title);
    fprintf(out,
            "</title>\n"
            "  <meta http-equiv=\"Content-Type\" content=\"text/html;charset=utf-8\"/>\n"
            "  <meta name='ocr-system' content='tesseract %s via ocrpool %s' />\n"
            "  <meta name='ocr-capabilities' content='ocr_page ocr_carea ocr_par ocr_line ocrx_word ocrp_wconf'/>\n"
            " </head>\n <body>\n",
            TessVersion(), OCRPOOL_VERSION);
    break;
  case OP_FMT_ALTO:
    fputs("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
          "<alto xmlns=\"http://www.loc.gov/standards/alto/ns-v3#\" "
          "xmlns:xlink=\"http://www.w3.org/1999/xlink\" "
          "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" "
          "xsi:schemaLocation=\"http://www.loc.gov/standards/alto/ns-v3# "
          "http://www.loc.gov/alto/v3/alto-3-0.xsd\">\n"
          "\t<Description>\n\t\t<MeasurementUnit>pixel</MeasurementUnit>\n"
          "\t\t<sourceImageInformation>\n\t\t\t<fileName>",
          out);
    put_xml_escaped(out, title);
    fprintf(out,
            "</fileName>\n\t\t</sourceImageInformation>\n"
            "\t\t<OCRProcessing ID=\"OCR_0\">\n\t\t\t<ocrProcessingStep>\n\t\t\t\t<processingSoftware>\n"
            "\t\t\t\t\t<softwareName>tesseract %s via ocrpool %s</softwareName>\n"
            "\t\t\t\t</processingSoftware>\n\t\t\t</ocrProcessingStep>\n\t\t</OCRProcessing>\n"
            "\t</Description>\n\t<Layout>\n",
            TessVersion(), OCRPOOL_VERSION);
    break;
  case OP_FMT_TSV:
    fputs("level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n", out);
    break;
  case OP_FMT_JSON:
    fputs("{\"pages\":[", out);
    break;
  default:
    break;
  }
}

static void write_footer(op_format_t fmt, FILE *out) {
  if (fmt == OP_FMT_HOCR)
    fputs(" </body>\n</html>\n", out);
  else if (fmt == OP_FMT_ALTO)
    fputs("\t</Layout>\n</alto>\n", out);
  else if (fmt == OP_FMT_JSON)
    fputs("]}\n", out);
}

static int copy_fragment(const char *path, FILE *out, op_error_t *err) {
  FILE *in = fopen(path, "rb");
  if (in == NULL)
    return op_error_set(err, OP_EIO, "internal", "a page result is missing: %s: %s", path, strerror(errno));
  char buf[65536];
  size_t n;
  int rc = 0;
  while ((n = fread(buf, 1, sizeof buf, in)) > 0) {
    if (fwrite(buf, 1, n, out) != n) {
      rc = op_error_set(err, OP_EIO, "internal", "writing the result failed: %s", strerror(errno));
      break;
    }
  }
  if (rc == 0 && ferror(in))
    rc = op_error_set(err, OP_EIO, "internal", "reading %s failed", path);
  fclose(in);
  return rc;
}

int op_output_assemble(op_format_t fmt, const char *const *page_files, const char *const *page_errors,
                       const uint32_t *page_numbers, size_t n, const char *title, FILE *out, op_error_t *err) {
  if (fmt == OP_FMT_PDF)
    return op_error_set(err, OP_EUSAGE, "internal", "PDF results are merged, not assembled");
  write_header(fmt, title ? title : "", out);
  for (size_t i = 0; i < n; i++) {
    if (fmt == OP_FMT_TXT && i > 0)
      fputc('\f', out); /* between pages, as the tesseract CLI */
    if (fmt == OP_FMT_JSON && i > 0)
      fputc(',', out);
    if (page_files[i] != NULL) {
      int rc = copy_fragment(page_files[i], out, err);
      if (rc < 0)
        return rc;
    } else if (fmt == OP_FMT_JSON) {
      fprintf(out, "{\"page\":%u,\"error\":", page_numbers[i] + 1);
      put_json_string(out, page_errors && page_errors[i] ? page_errors[i] : "failed");
      fputc('}', out);
    }
  }
  write_footer(fmt, out);
  if (ferror(out))
    return op_error_set(err, OP_EIO, "internal", "writing the result failed");
  return 0;
}

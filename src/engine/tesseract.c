/*
 * tesseract.c: the built-in engine, through Tesseract's C API.
 *
 * A model is one initialised TessBaseAPI (languages + OEM), created once per
 * worker and reused for every page; only the page image changes. Page
 * segmentation defaults to 3 (auto), the tesseract CLI's choice, rather than
 * the C API's 6. Text, hOCR, TSV, ALTO and the per-page PDF come from
 * Tesseract's own renderers, so results match its CLI; JSON is built here
 * from the result iterator. Orientation detection uses a second, lazily loaded
 * API with the OSD model.
 */
#include <leptonica/allheaders.h>
#include <stdlib.h>
#include <string.h>
#include <tesseract/capi.h>

#include "engine/engine.h"
#include "engine/fragments.h"
#include "util/log.h"
#include "util/utf8.h"

/* Tesseract's own min_orientation_margin. OCRmyPDF's default of 14 leaves
 * short pages upside down: phototest turned 180 degrees scores 11. */
#define ROTATE_MIN_CONFIDENCE 7.0f

struct op_model_s {
  TessBaseAPI *api;
  TessBaseAPI *osd; /* loaded on the first --rotate-pages */
  char lang[128];
};

static int tess_open(const op_model_spec_t *spec, op_model_t **out, op_error_t *err) {
  op_model_t *m = calloc(1, sizeof *m);
  if (m == NULL)
    return op_error_set(err, OP_ENOMEM, NULL, "out of memory loading a model");
  snprintf(m->lang, sizeof m->lang, "%s", spec->lang);
  m->api = TessBaseAPICreate();
  if (m->api == NULL || TessBaseAPIInit2(m->api, NULL, spec->lang, (TessOcrEngineMode)spec->oem) != 0) {
    TessBaseAPIDelete(m->api);
    free(m);
    return op_error_set(err, OP_EENGINE, "model_unavailable",
                        "cannot load Tesseract language \"%s\" (OEM %d): is the tesseract-ocr-%s package installed?",
                        spec->lang, spec->oem, spec->lang);
  }
  /* Per-page chatter ("Estimating resolution as ...") is not ours to print. */
  TessBaseAPISetVariable(m->api, "debug_file", "/dev/null");
  *out = m;
  return 0;
}

static void tess_close(op_model_t *m) {
  if (m == NULL)
    return;
  if (m->osd != NULL) {
    TessBaseAPIEnd(m->osd);
    TessBaseAPIDelete(m->osd);
  }
  TessBaseAPIEnd(m->api);
  TessBaseAPIDelete(m->api);
  free(m);
}

/* Detects the page's orientation; *quads is the clockwise quarter turns that make it upright. */
static int detect_orientation(op_model_t *m, PIX *pix, float threshold, int *quads, op_error_t *err) {
  *quads = 0;
  if (m->osd == NULL) {
    m->osd = TessBaseAPICreate();
    if (m->osd == NULL || TessBaseAPIInit2(m->osd, NULL, "osd", OEM_TESSERACT_ONLY) != 0) {
      TessBaseAPIDelete(m->osd);
      m->osd = NULL;
      return op_error_set(err, OP_EENGINE, "model_unavailable",
                          "--rotate-pages needs Tesseract's OSD model: install tesseract-ocr-osd");
    }
    TessBaseAPISetVariable(m->osd, "debug_file", "/dev/null");
  }
  TessBaseAPISetImage2(m->osd, pix);
  int deg = 0;
  float conf = 0, script_conf = 0;
  const char *script = NULL;
  /* Too little text to decide is not an error: the page stays as it is. */
  if (TessBaseAPIDetectOrientationScript(m->osd, &deg, &conf, &script, &script_conf) && conf >= threshold)
    *quads = ((360 - deg) / 90) % 4;
  op_log_debug("orientation: %d degrees, confidence %.1f", deg, (double)conf);
  TessBaseAPIClear(m->osd);
  return 0;
}

static json_t *bbox_json(TessPageIterator *pi, TessPageIteratorLevel level) {
  int x0, y0, x1, y1;
  if (!TessPageIteratorBoundingBox(pi, level, &x0, &y0, &x1, &y1))
    return json_pack("[i,i,i,i]", 0, 0, 0, 0);
  return json_pack("[i,i,i,i]", x0, y0, x1, y1);
}

/* Strips the newlines Tesseract ends line text with. */
static json_t *line_text(char *text) {
  if (text == NULL)
    return json_string("");
  size_t len = strlen(text);
  while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == ' '))
    text[--len] = '\0';
  json_t *j = op_utf8_json(text);
  TessDeleteText(text);
  return j ? j : json_string("");
}

/* The page as JSON: size, and blocks of lines of words with boxes and confidences. */
static json_t *page_json(op_model_t *m, PIX *pix, const op_page_opts_t *opts, const op_page_stats_t *stats,
                         const char *text, uint32_t *n_words) {
  json_t *blocks = json_array();
  json_t *block = NULL, *lines = NULL, *words = NULL;
  *n_words = 0;
  TessResultIterator *ri = TessBaseAPIGetIterator(m->api);
  if (ri != NULL) {
    TessPageIterator *pi = TessResultIteratorGetPageIterator(ri);
    do {
      char *word = TessResultIteratorGetUTF8Text(ri, RIL_WORD);
      if (word == NULL)
        continue;
      if (block == NULL || TessPageIteratorIsAtBeginningOf(pi, RIL_BLOCK)) {
        lines = json_array();
        block = json_pack("{s:o, s:o}", "bbox", bbox_json(pi, RIL_BLOCK), "lines", lines);
        json_array_append_new(blocks, block);
        words = NULL;
      }
      if (words == NULL || TessPageIteratorIsAtBeginningOf(pi, RIL_TEXTLINE)) {
        words = json_array();
        json_array_append_new(lines,
                              json_pack("{s:o, s:o, s:o}", "bbox", bbox_json(pi, RIL_TEXTLINE), "text",
                                        line_text(TessResultIteratorGetUTF8Text(ri, RIL_TEXTLINE)), "words", words));
      }
      float conf = TessResultIteratorConfidence(ri, RIL_WORD);
      json_t *w = json_pack("{s:o, s:o, s:f}", "text", op_utf8_json(word), "bbox", bbox_json(pi, RIL_WORD), "conf",
                            (double)((int)(conf * 100.0f + 0.5f)) / 100.0);
      if (w != NULL)
        json_array_append_new(words, w);
      (*n_words)++;
      TessDeleteText(word);
    } while (TessResultIteratorNext(ri, RIL_WORD));
    TessResultIteratorDelete(ri);
  }
  l_int32 xres = 0, yres = 0;
  pixGetResolution(pix, &xres, &yres);
  return json_pack("{s:I, s:i, s:i, s:i, s:i, s:i, s:s, s:o}", "page", (json_int_t)opts->page_number + 1, "width",
                   pixGetWidth(pix), "height", pixGetHeight(pix), "dpi", yres, "rotated", stats->rotated_deg,
                   "mean_conf", stats->mean_conf, "text", text ? text : "", "blocks", blocks);
}

static int write_pdf(op_model_t *m, const op_page_opts_t *opts, int rotated, op_error_t *err) {
  /* The renderer embeds the input file's own JPEG or PNG data when it can;
   * a rotated page, or a page rendered from a PDF, must use the pixels. */
  TessBaseAPISetInputName(m->api, rotated || opts->input_path == NULL ? "" : opts->input_path);
  TessResultRenderer *r = TessPDFRendererCreate(opts->out_prefix, TessBaseAPIGetDatapath(m->api), 0);
  int ok = r != NULL && TessResultRendererBeginDocument(r, opts->title ? opts->title : "") &&
           TessResultRendererAddImage(r, m->api) && TessResultRendererEndDocument(r);
  TessDeleteResultRenderer(r);
  if (!ok)
    return op_error_set(err, OP_EENGINE, NULL, "Tesseract's PDF renderer failed on the page");
  return 0;
}

static int tess_run_page(op_model_t *m, PIX *input, const op_page_opts_t *opts, op_page_stats_t *stats,
                         op_error_t *err) {
  PIX *rotated = NULL;
  PIX *pix = input;
  char *text = NULL, *frag = NULL;
  json_t *json = NULL;
  int rc = 0;
  stats->rotated_deg = 0;
  stats->mean_conf = -1;
  stats->words = 0;

  if (opts->rotate_pages) {
    int quads;
    float threshold = opts->rotate_threshold > 0 ? opts->rotate_threshold : ROTATE_MIN_CONFIDENCE;
    if ((rc = detect_orientation(m, input, threshold, &quads, err)) < 0)
      goto out;
    if (quads != 0) {
      rotated = pixRotateOrth(input, quads);
      if (rotated == NULL) {
        rc = op_error_set(err, OP_ENOMEM, NULL, "out of memory rotating the page");
        goto out;
      }
      pix = rotated;
      stats->rotated_deg = quads * 90;
    }
  }

  char dpi[16];
  snprintf(dpi, sizeof dpi, "%d", opts->user_dpi > 0 ? opts->user_dpi : 0);
  TessBaseAPISetVariable(m->api, "user_defined_dpi", dpi);
  TessBaseAPISetPageSegMode(m->api, (TessPageSegMode)opts->psm);
  TessBaseAPISetInputName(m->api, opts->title ? opts->title : ""); /* hOCR's page title names it */
  TessBaseAPISetImage2(m->api, pix);
  if (TessBaseAPIRecognize(m->api, NULL) != 0) {
    rc = op_error_set(err, OP_EENGINE, NULL, "Tesseract could not recognise the page");
    goto out;
  }
  stats->mean_conf = TessBaseAPIMeanTextConf(m->api);
  text = TessBaseAPIGetUTF8Text(m->api);
  if (opts->formats & OP_FMT_TXT && (rc = op__fragment_write(opts, OP_FMT_TXT, text, err)) < 0)
    goto out;
  static const struct {
    op_format_t fmt;
    char *(*render)(TessBaseAPI *, int page_number);
  } renderers[] = {{OP_FMT_HOCR, TessBaseAPIGetHOCRText},
                   {OP_FMT_TSV, TessBaseAPIGetTsvText},
                   {OP_FMT_ALTO, TessBaseAPIGetAltoText}};
  for (size_t i = 0; i < sizeof renderers / sizeof renderers[0]; i++) {
    if (!(opts->formats & renderers[i].fmt))
      continue;
    frag = renderers[i].render(m->api, (int)opts->page_number);
    if ((rc = op__fragment_write(opts, renderers[i].fmt, frag, err)) < 0)
      goto out;
    TessDeleteText(frag);
    frag = NULL;
  }
  if (opts->formats & OP_FMT_JSON) {
    uint32_t words = 0;
    json = page_json(m, pix, opts, stats, text, &words);
    stats->words = words;
    if (json == NULL) {
      rc = op_error_set(err, OP_ENOMEM, NULL, "out of memory building the json result");
      goto out;
    }
    if ((rc = op__fragment_write_json(opts, json, err)) < 0)
      goto out;
  }
  if (!(opts->formats & OP_FMT_JSON)) {
    int *confs = TessBaseAPIAllWordConfidences(m->api);
    for (int *c = confs; c != NULL && *c != -1; c++)
      stats->words++;
    TessDeleteIntArray(confs);
  }
  if (opts->formats & OP_FMT_PDF && (rc = write_pdf(m, opts, rotated != NULL, err)) < 0)
    goto out;
out:
  json_decref(json);
  TessDeleteText(frag);
  TessDeleteText(text);
  TessBaseAPIClear(m->api);
  pixDestroy(&rotated);
  return rc;
}

const op_engine_t op_engine_tesseract = {
    .name = "tesseract",
    .open = tess_open,
    .run_page = tess_run_page,
    .close = tess_close,
};

/*
 * tempfile.c: where Leptonica puts its temporary files.
 *
 * Leptonica encodes some images for PDF (Tesseract's PDF renderer: JPEG and
 * CCITT G4 pages) through a temporary file named by l_makeTempFilename, which
 * always picks /tmp. A sandboxed worker may not write there, so this file
 * defines that function for the ocrpool binary, which the dynamic linker
 * binds ahead of the library's own (Leptonica calls it through its PLT): the
 * file is made, as Leptonica makes it, in the directory the worker's sandbox
 * names. The directory is process-wide because Leptonica asks with no
 * argument; only workers set it, once, before any page.
 */
#include <leptonica/allheaders.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "doc/doc.h"

static char temp_dir[1024] = "/tmp";

void op_doc_set_temp_dir(const char *dir) {
  snprintf(temp_dir, sizeof temp_dir, "%s", dir);
}

/* Leptonica's contract: a new empty file's name, for the caller to remove
 * and free (Leptonica's LEPT_FREE is free()); NULL on failure. */
char *l_makeTempFilename(void) {
  char *path = NULL;
  if (asprintf(&path, "%s/lept.XXXXXX", temp_dir) < 0)
    return NULL;
  int fd = mkstemp(path);
  if (fd < 0) {
    free(path);
    return NULL;
  }
  close(fd);
  return path;
}

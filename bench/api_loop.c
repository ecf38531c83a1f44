/*
 * api_loop.c: the physical limit that ocrpool's throughput is measured against.
 *
 * A plain loop over the Tesseract C API in N processes, the model loaded once
 * per process, pages handed out one at a time through a pipe (as ocrpool hands
 * them to idle workers), each page read with Leptonica and its text written to
 * OUTDIR so the bench can check the work was done. Nothing else: no protocol,
 * no supervisor, no result assembly.
 *
 * Usage: bench_api_loop -j N -o OUTDIR [-l LANG] IMAGE...
 * Run it with OMP_THREAD_LIMIT=1 in the environment, as ocrpool's workers run.
 */
#include <errno.h>
#include <leptonica/allheaders.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <tesseract/capi.h>
#include <time.h>
#include <unistd.h>

static int run_child(int rfd, char **files, const char *outdir, const char *lang) {
  TessBaseAPI *api = TessBaseAPICreate();
  if (TessBaseAPIInit3(api, NULL, lang) != 0) {
    fprintf(stderr, "api_loop: cannot load %s\n", lang);
    return 1;
  }
  TessBaseAPISetVariable(api, "debug_file", "/dev/null");
  int index;
  while (read(rfd, &index, sizeof index) == (ssize_t)sizeof index) {
    PIX *pix = pixRead(files[index]);
    if (pix == NULL) {
      fprintf(stderr, "api_loop: cannot read %s\n", files[index]);
      return 1;
    }
    TessBaseAPISetPageSegMode(api, PSM_AUTO);
    TessBaseAPISetImage2(api, pix);
    if (TessBaseAPIRecognize(api, NULL) != 0)
      return 1;
    char *text = TessBaseAPIGetUTF8Text(api);
    char *copy = strdup(files[index]);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.txt", outdir, basename(copy));
    FILE *f = fopen(path, "w");
    if (f != NULL) {
      fputs(text ? text : "", f);
      fclose(f);
    }
    free(copy);
    TessDeleteText(text);
    TessBaseAPIClear(api);
    pixDestroy(&pix);
  }
  TessBaseAPIEnd(api);
  TessBaseAPIDelete(api);
  return 0;
}

int main(int argc, char **argv) {
  int jobs = 2;
  const char *outdir = ".", *lang = "eng";
  int c;
  while ((c = getopt(argc, argv, "j:o:l:")) != -1) {
    if (c == 'j')
      jobs = atoi(optarg);
    else if (c == 'o')
      outdir = optarg;
    else if (c == 'l')
      lang = optarg;
    else
      return 2;
  }
  int n = argc - optind;
  if (n <= 0 || jobs <= 0) {
    fputs("usage: bench_api_loop -j N -o OUTDIR [-l LANG] IMAGE...\n", stderr);
    return 2;
  }
  int p[2];
  if (pipe(p) < 0)
    return 1;
  /* All page tokens fit in the pipe buffer (64 KiB = 16k pages). */
  for (int i = 0; i < n; i++)
    if (write(p[1], &i, sizeof i) != (ssize_t)sizeof i)
      return 1;
  close(p[1]);
  for (int k = 0; k < jobs; k++) {
    pid_t pid = fork();
    if (pid == 0) {
      close(p[1]);
      _exit(run_child(p[0], argv + optind, outdir, lang));
    }
    if (pid < 0)
      return 1;
  }
  close(p[0]);
  int failed = 0, status;
  while (wait(&status) > 0)
    failed |= !WIFEXITED(status) || WEXITSTATUS(status) != 0;
  return failed;
}

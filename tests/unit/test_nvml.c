/*
 * test_nvml.c: the NVML loader against the test double (tests/nvml/), which
 * ctest puts first on LD_LIBRARY_PATH and which reports the GPUs and processes
 * that the file named in OCRPOOL_NVML_DOUBLE describes.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "mem/nvml.h"

#define GIB (1024ull * 1024 * 1024)

static char dir[64], path[128];

/* Replaces the description whole, as a test beside a running server would. */
static void describe(const char *text) {
  char tmp[160];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  CHECK(f != NULL);
  if (f == NULL)
    return;
  CHECK(fputs(text, f) >= 0);
  CHECK(fclose(f) == 0);
  CHECK(rename(tmp, path) == 0);
}

/* Whether libnvidia-ml.so.1 is loaded in this process now. */
static int nvml_loaded(void) {
  void *lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_NOLOAD);
  if (lib == NULL)
    return 0;
  dlclose(lib);
  return 1;
}

static uint64_t used_by(op_nvml_t *nvml, unsigned index, const pid_t *pids, size_t n) {
  uint64_t bytes = 12345;
  op_error_t e;
  int rc = op_nvml_pids_used(nvml, index, pids, n, &bytes, &e);
  if (rc != 0)
    fprintf(stderr, "pids_used: %s\n", e.message);
  CHECK(rc == 0);
  return bytes;
}

static void test_no_driver(void) {
  op_nvml_t *nvml = (op_nvml_t *)&nvml; /* must be reset to NULL */
  op_error_t e;
  op_error_clear(&e);
  CHECK(op_nvml_open(&nvml, &e) == OP_EUNSUPPORTED);
  CHECK(nvml == NULL);
  CHECK(e.code == OP_EUNSUPPORTED);
  CHECK(e.message[0] != '\0');
  CHECK(strstr(e.message, "GPUs are not used") != NULL);
  CHECK(!nvml_loaded());
  CHECK(op_nvml_open(&nvml, NULL) == OP_EUNSUPPORTED);
  op_nvml_close(NULL);
}

static const char two_gpus[] = "# two cards, processes on both\n"
                               "device Test-GPU-A 17179869184 5368709120\n"
                               "device Test-GPU-B 8589934592 1073741824   # trailing comment\n"
                               "\n"
                               "process 0 100 1000\n"
                               "process 0 101 2000\n"
                               "process 0 102 18446744073709551615  # NVML_VALUE_NOT_AVAILABLE\n"
                               "process 1 100 500\n"
                               "process 1 200 700\n";

static void test_devices(op_nvml_t *nvml) {
  op_gpu_info_t info;
  op_error_t e;
  CHECK(op_nvml_count(nvml) == 2);
  CHECK(op_nvml_info(nvml, 0, &info, &e) == 0);
  CHECK_STR_EQ(info.name, "Test-GPU-A");
  CHECK(info.total_bytes == 16 * GIB);
  CHECK(info.used_bytes == 5 * GIB);
  CHECK(op_nvml_info(nvml, 1, &info, &e) == 0);
  CHECK_STR_EQ(info.name, "Test-GPU-B");
  CHECK(info.total_bytes == 8 * GIB);
  CHECK(info.used_bytes == 1 * GIB);
  op_error_clear(&e);
  CHECK(op_nvml_info(nvml, 2, &info, &e) < 0);
  CHECK(e.message[0] != '\0');
}

static void test_pids(op_nvml_t *nvml) {
  pid_t both[] = {100, 101}, lone[] = {100, 999}, twice[] = {100, 100}, absent[] = {999}, na[] = {102};
  pid_t on_b[] = {100, 200, 101};
  CHECK(used_by(nvml, 0, both, 2) == 3000);
  CHECK(used_by(nvml, 0, lone, 2) == 1000);
  CHECK(used_by(nvml, 0, twice, 2) == 1000); /* a pid asked twice counts once */
  CHECK(used_by(nvml, 0, absent, 1) == 0);
  CHECK(used_by(nvml, 0, na, 1) == 0); /* NVML could not tell: counts none */
  CHECK(used_by(nvml, 0, NULL, 0) == 0);
  CHECK(used_by(nvml, 1, on_b, 3) == 1200);
  CHECK(used_by(nvml, 1, both, 1) == 500);

  uint64_t bytes = 1;
  op_error_t e;
  op_error_clear(&e);
  CHECK(op_nvml_pids_used(nvml, 2, both, 2, &bytes, &e) < 0);
  CHECK(e.message[0] != '\0');
  CHECK(op_nvml_pids_used(nvml, 7, both, 2, &bytes, NULL) < 0);
}

/* More processes than the loader first makes room for: it must grow and ask
 * again. */
static void test_many_processes(op_nvml_t *nvml) {
  static char text[64 * 1024];
  size_t len = (size_t)snprintf(text, sizeof text, "%s", two_gpus);
  pid_t pids[300];
  for (int i = 0; i < 300; i++) {
    pids[i] = 5000 + i;
    len += (size_t)snprintf(text + len, sizeof text - len, "process 0 %d %d\n", 5000 + i, i + 1);
  }
  describe(text);
  CHECK(used_by(nvml, 0, pids, 300) == 300 * 301 / 2);
  pid_t some[] = {5000, 5299, 101};
  CHECK(used_by(nvml, 0, some, 3) == 1 + 300 + 2000);
  describe(two_gpus);
}

/* The double is read on every call: a change shows without reopening. */
static void test_changes_seen(op_nvml_t *nvml) {
  pid_t both[] = {100, 101};
  describe("device Test-GPU-A 17179869184 6442450944\n"
           "device Test-GPU-B 8589934592 1073741824\n"
           "process 0 100 1000\n"
           "process 0 101 4000\n"
           "process 1 100 500\n");
  CHECK(used_by(nvml, 0, both, 2) == 5000);
  op_gpu_info_t info;
  CHECK(op_nvml_info(nvml, 0, &info, NULL) == 0);
  CHECK(info.used_bytes == 6 * GIB);
  describe(two_gpus);
  CHECK(used_by(nvml, 0, both, 2) == 3000);
}

static void test_errors(op_nvml_t *nvml) {
  pid_t both[] = {100, 101};
  uint64_t bytes = 1;
  op_error_t e;
  describe("device Test-GPU-A 17179869184 5368709120\n"
           "device Test-GPU-B 8589934592 1073741824\n"
           "fail nvmlDeviceGetComputeRunningProcesses_v3 999\n"
           "fail nvmlDeviceGetMemoryInfo 15\n");
  op_error_clear(&e);
  CHECK(op_nvml_pids_used(nvml, 0, both, 2, &bytes, &e) == OP_EIO);
  CHECK(bytes == 0);
  CHECK(strstr(e.message, "nvmlDeviceGetComputeRunningProcesses_v3") != NULL);
  CHECK(strstr(e.message, "Unknown Error") != NULL);
  op_gpu_info_t info;
  op_error_clear(&e);
  CHECK(op_nvml_info(nvml, 1, &info, &e) == OP_EIO);
  CHECK(strstr(e.message, "nvmlDeviceGetMemoryInfo") != NULL);
  describe(two_gpus);
  CHECK(used_by(nvml, 0, both, 2) == 3000);
}

/* nvmlInit_v2 failing is "no driver", and leaves nothing loaded. */
static void test_init_fails(void) {
  describe("device Test-GPU-A 17179869184 5368709120\n"
           "fail nvmlInit_v2 9\n");
  op_nvml_t *nvml = NULL;
  op_error_t e;
  op_error_clear(&e);
  CHECK(op_nvml_open(&nvml, &e) == OP_EUNSUPPORTED);
  CHECK(nvml == NULL);
  CHECK(strstr(e.message, "nvmlInit_v2") != NULL);
  CHECK(strstr(e.message, "GPUs are not used") != NULL);
  CHECK(!nvml_loaded());
  describe(two_gpus);
}

int main(void) {
  unsetenv("OCRPOOL_NVML_DOUBLE");
  test_no_driver();

  snprintf(dir, sizeof dir, "/tmp/ocrpool-nvml-XXXXXX");
  if (mkdtemp(dir) == NULL) {
    perror("mkdtemp");
    return 1;
  }
  snprintf(path, sizeof path, "%s/gpus", dir);
  setenv("OCRPOOL_NVML_DOUBLE", path, 1);
  describe(two_gpus);

  op_nvml_t *nvml = NULL;
  op_error_t e;
  int rc = op_nvml_open(&nvml, &e);
  if (rc != 0)
    fprintf(stderr, "open: %s (is tests/nvml's double first on LD_LIBRARY_PATH?)\n", e.message);
  CHECK(rc == 0 && nvml != NULL);
  if (nvml != NULL) {
    test_devices(nvml);
    test_pids(nvml);
    test_many_processes(nvml);
    test_changes_seen(nvml);
    test_errors(nvml);
    op_nvml_close(nvml);
    CHECK(!nvml_loaded());
  }
  test_init_fails();

  unlink(path);
  rmdir(dir);
  return CHECK_DONE();
}

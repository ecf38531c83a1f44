/*
 * nvml_double.c: a TEST DOUBLE of NVIDIA's libnvidia-ml.so.1, standing in for
 * the real library on machines without a GPU. It is not NVIDIA's code and
 * drives no hardware: it reports GPUs and processes that a text file describes.
 *
 * CMake builds it as build/nvml-double/libnvidia-ml.so.1
 * (tests/nvml/nvml.cmake). A test puts that folder first on LD_LIBRARY_PATH, so
 * ocrpool's dlopen finds it before any real driver, and names the description
 * in OCRPOOL_NVML_DOUBLE. The file is read again on every call, so a test can
 * change it while a server runs (write a new file and rename it over the old
 * one, so no call reads half). Without the variable, or with a file that cannot
 * be read, nvmlInit_v2 fails with NVML_ERROR_DRIVER_NOT_LOADED, as on a machine
 * with no driver.
 *
 * The file, one item a line, '#' starting a comment:
 *   device <name-without-spaces> <total_bytes> <used_bytes>
 *   process <device_index> <pid> <used_bytes>
 *   fail <nvml_function_name> <nvml_return_code>
 * Devices are numbered from 0 in the order listed. "fail" makes that function
 * return that code, to test the callers' error paths. A malformed line makes
 * every call fail with NVML_ERROR_UNKNOWN and is reported on stderr.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DOUBLE_MAX_DEVICES 16
#define DOUBLE_MAX_PROCESSES 1024
#define DOUBLE_MAX_FAILS 16

typedef int nvmlReturn_t;
typedef struct nvmlDevice_st *nvmlDevice_t;

enum {
  NVML_SUCCESS = 0,
  NVML_ERROR_UNINITIALIZED = 1,
  NVML_ERROR_INVALID_ARGUMENT = 2,
  NVML_ERROR_INSUFFICIENT_SIZE = 7,
  NVML_ERROR_DRIVER_NOT_LOADED = 9,
  NVML_ERROR_UNKNOWN = 999,
};

typedef struct {
  unsigned long long total, free, used;
} nvmlMemory_t;

typedef struct {
  unsigned int pid;
  unsigned long long usedGpuMemory;
} nvmlProcessInfo_v1_t;

/* What _v2 fills, and _v3 too in current nvml.h (there named
 * nvmlProcessInfo_t). */
typedef struct {
  unsigned int pid;
  unsigned long long usedGpuMemory;
  unsigned int gpuInstanceId;
  unsigned int computeInstanceId;
} nvmlProcessInfo_v2_t;

/* The exported API (declared first for -Wmissing-prototypes). */
nvmlReturn_t nvmlInit_v2(void);
nvmlReturn_t nvmlShutdown(void);
const char *nvmlErrorString(nvmlReturn_t result);
nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count);
nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device);
nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length);
nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory);
nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t device, unsigned int *count,
                                                     nvmlProcessInfo_v2_t *infos);
nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v2(nvmlDevice_t device, unsigned int *count,
                                                     nvmlProcessInfo_v2_t *infos);
nvmlReturn_t nvmlDeviceGetComputeRunningProcesses(nvmlDevice_t device, unsigned int *count,
                                                  nvmlProcessInfo_v1_t *infos);

typedef struct {
  char name[96];
  unsigned long long total, used;
} double_device_t;

typedef struct {
  unsigned device;
  unsigned pid;
  unsigned long long used;
} double_process_t;

typedef struct {
  char function[96];
  int code;
} double_fail_t;

typedef struct {
  double_device_t devices[DOUBLE_MAX_DEVICES];
  double_process_t processes[DOUBLE_MAX_PROCESSES];
  double_fail_t fails[DOUBLE_MAX_FAILS];
  unsigned n_devices, n_processes, n_fails;
} double_state_t;

/* Handles point into this array: one distinct address per device index. */
static char device_handles[DOUBLE_MAX_DEVICES];

/* nvmlInit_v2 calls not yet matched by nvmlShutdown, as NVML counts them. */
static atomic_int init_count;

static int parse_line(double_state_t *state, char *line) {
  char *hash = strchr(line, '#');
  if (hash != NULL)
    *hash = '\0';
  char word[16], text[96], extra[2];
  unsigned index, pid;
  unsigned long long total, used;
  int code;
  if (sscanf(line, " %15s", word) != 1)
    return 0; /* blank */
  if (strcmp(word, "device") == 0 && sscanf(line, " device %95s %llu %llu %1s", text, &total, &used, extra) == 3) {
    if (state->n_devices == DOUBLE_MAX_DEVICES || used > total)
      return -1;
    double_device_t *d = &state->devices[state->n_devices++];
    snprintf(d->name, sizeof d->name, "%s", text);
    d->total = total;
    d->used = used;
    return 0;
  }
  if (strcmp(word, "process") == 0 && sscanf(line, " process %u %u %llu %1s", &index, &pid, &used, extra) == 3) {
    if (state->n_processes == DOUBLE_MAX_PROCESSES)
      return -1;
    state->processes[state->n_processes++] = (double_process_t){.device = index, .pid = pid, .used = used};
    return 0;
  }
  if (strcmp(word, "fail") == 0 && sscanf(line, " fail %95s %d %1s", text, &code, extra) == 2) {
    if (state->n_fails == DOUBLE_MAX_FAILS)
      return -1;
    double_fail_t *f = &state->fails[state->n_fails++];
    snprintf(f->function, sizeof f->function, "%s", text);
    f->code = code;
    return 0;
  }
  return -1;
}

/*
 * Reads the description into a fresh state (the caller frees it). NULL with
 * *result set when there is none or it is malformed.
 */
static double_state_t *load(nvmlReturn_t *result) {
  const char *path = getenv("OCRPOOL_NVML_DOUBLE");
  double_state_t *state = NULL;
  FILE *f = NULL;
  char line[256];
  unsigned line_no = 0;

  *result = NVML_ERROR_DRIVER_NOT_LOADED;
  if (path == NULL || (f = fopen(path, "r")) == NULL)
    goto out;
  *result = NVML_ERROR_UNKNOWN;
  state = calloc(1, sizeof *state);
  if (state == NULL)
    goto out;
  while (fgets(line, sizeof line, f) != NULL) {
    line_no++;
    if (parse_line(state, line) != 0) {
      fprintf(stderr, "nvml double: %s:%u: cannot use this line\n", path, line_no);
      free(state);
      state = NULL;
      goto out;
    }
  }
  *result = NVML_SUCCESS;

out:
  if (f != NULL)
    fclose(f);
  return state;
}

static int fails(const double_state_t *state, const char *function, nvmlReturn_t *result) {
  for (unsigned i = 0; i < state->n_fails; i++)
    if (strcmp(state->fails[i].function, function) == 0) {
      *result = state->fails[i].code;
      return 1;
    }
  return 0;
}

/* The description for a call after nvmlInit_v2, or NULL with *result set. */
static double_state_t *begin(const char *function, nvmlReturn_t *result) {
  if (atomic_load(&init_count) <= 0) {
    *result = NVML_ERROR_UNINITIALIZED;
    return NULL;
  }
  double_state_t *state = load(result);
  if (state != NULL && fails(state, function, result)) {
    free(state);
    return NULL;
  }
  return state;
}

/* The device a handle names, if the description still lists it. */
static const double_device_t *device_of(const double_state_t *state, nvmlDevice_t device, unsigned *index) {
  uintptr_t first = (uintptr_t)device_handles, p = (uintptr_t)device;
  if (p < first || p >= first + DOUBLE_MAX_DEVICES)
    return NULL;
  *index = (unsigned)(p - first);
  return *index < state->n_devices ? &state->devices[*index] : NULL;
}

nvmlReturn_t nvmlInit_v2(void) {
  nvmlReturn_t result;
  double_state_t *state = load(&result);
  if (state != NULL && fails(state, "nvmlInit_v2", &result)) {
    free(state);
    return result;
  }
  free(state);
  if (result == NVML_SUCCESS)
    atomic_fetch_add(&init_count, 1);
  return result;
}

nvmlReturn_t nvmlShutdown(void) {
  int count = atomic_load(&init_count);
  while (count > 0 && !atomic_compare_exchange_weak(&init_count, &count, count - 1))
    ;
  return count > 0 ? NVML_SUCCESS : NVML_ERROR_UNINITIALIZED;
}

const char *nvmlErrorString(nvmlReturn_t result) {
  switch (result) {
  case NVML_SUCCESS:
    return "Success";
  case NVML_ERROR_UNINITIALIZED:
    return "Uninitialized";
  case NVML_ERROR_INVALID_ARGUMENT:
    return "Invalid Argument";
  case NVML_ERROR_INSUFFICIENT_SIZE:
    return "Insufficient Size";
  case NVML_ERROR_DRIVER_NOT_LOADED:
    return "Driver Not Loaded";
  default:
    return "Unknown Error";
  }
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
  nvmlReturn_t result;
  double_state_t *state = begin("nvmlDeviceGetCount_v2", &result);
  if (state == NULL)
    return result;
  if (count == NULL)
    result = NVML_ERROR_INVALID_ARGUMENT;
  else
    *count = state->n_devices;
  free(state);
  return result;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
  nvmlReturn_t result;
  double_state_t *state = begin("nvmlDeviceGetHandleByIndex_v2", &result);
  if (state == NULL)
    return result;
  if (device == NULL || index >= state->n_devices)
    result = NVML_ERROR_INVALID_ARGUMENT;
  else
    *device = (nvmlDevice_t)(void *)&device_handles[index];
  free(state);
  return result;
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length) {
  nvmlReturn_t result;
  unsigned index;
  double_state_t *state = begin("nvmlDeviceGetName", &result);
  if (state == NULL)
    return result;
  const double_device_t *d = device_of(state, device, &index);
  if (d == NULL || name == NULL)
    result = NVML_ERROR_INVALID_ARGUMENT;
  else if (strlen(d->name) >= length)
    result = NVML_ERROR_INSUFFICIENT_SIZE;
  else
    memcpy(name, d->name, strlen(d->name) + 1);
  free(state);
  return result;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory) {
  nvmlReturn_t result;
  unsigned index;
  double_state_t *state = begin("nvmlDeviceGetMemoryInfo", &result);
  if (state == NULL)
    return result;
  const double_device_t *d = device_of(state, device, &index);
  if (d == NULL || memory == NULL) {
    result = NVML_ERROR_INVALID_ARGUMENT;
  } else {
    memory->total = d->total;
    memory->used = d->used;
    memory->free = d->total - d->used;
  }
  free(state);
  return result;
}

/*
 * The three process calls differ only in the entry they fill: fill(infos, i,
 * process) writes entry i. As NVML does, a short array gets
 * NVML_ERROR_INSUFFICIENT_SIZE and *count set to the number needed.
 */
static nvmlReturn_t processes(const char *function, nvmlDevice_t device, unsigned int *count, void *infos,
                              void (*fill)(void *infos, unsigned i, const double_process_t *process)) {
  nvmlReturn_t result;
  unsigned index, needed = 0, n = 0;
  double_state_t *state = begin(function, &result);
  if (state == NULL)
    return result;
  if (device_of(state, device, &index) == NULL || count == NULL) {
    result = NVML_ERROR_INVALID_ARGUMENT;
    goto out;
  }
  for (unsigned i = 0; i < state->n_processes; i++)
    needed += state->processes[i].device == index;
  if (needed > *count) {
    *count = needed;
    result = NVML_ERROR_INSUFFICIENT_SIZE;
    goto out;
  }
  if (needed > 0 && infos == NULL) {
    result = NVML_ERROR_INVALID_ARGUMENT;
    goto out;
  }
  for (unsigned i = 0; i < state->n_processes; i++)
    if (state->processes[i].device == index)
      fill(infos, n++, &state->processes[i]);
  *count = n;

out:
  free(state);
  return result;
}

static void fill_v1(void *infos, unsigned i, const double_process_t *process) {
  ((nvmlProcessInfo_v1_t *)infos)[i] = (nvmlProcessInfo_v1_t){.pid = process->pid, .usedGpuMemory = process->used};
}

static void fill_v2(void *infos, unsigned i, const double_process_t *process) {
  ((nvmlProcessInfo_v2_t *)infos)[i] = (nvmlProcessInfo_v2_t){.pid = process->pid,
                                                              .usedGpuMemory = process->used,
                                                              .gpuInstanceId = 0xFFFFFFFFu,
                                                              .computeInstanceId = 0xFFFFFFFFu};
}

nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t device, unsigned int *count,
                                                     nvmlProcessInfo_v2_t *infos) {
  return processes("nvmlDeviceGetComputeRunningProcesses_v3", device, count, infos, fill_v2);
}

nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v2(nvmlDevice_t device, unsigned int *count,
                                                     nvmlProcessInfo_v2_t *infos) {
  return processes("nvmlDeviceGetComputeRunningProcesses_v2", device, count, infos, fill_v2);
}

nvmlReturn_t nvmlDeviceGetComputeRunningProcesses(nvmlDevice_t device, unsigned int *count,
                                                  nvmlProcessInfo_v1_t *infos) {
  return processes("nvmlDeviceGetComputeRunningProcesses", device, count, infos, fill_v1);
}

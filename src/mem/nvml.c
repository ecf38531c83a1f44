/*
 * nvml.c: NVIDIA GPUs through NVML, loaded with dlopen at run time.
 *
 * No nvml.h is needed to build: the few NVML types and constants used are
 * declared below from NVIDIA's NVML API reference, and every function is
 * found with dlsym. Without the library or its driver op_nvml_open says so and
 * leaves nothing loaded. The running-process list is the one structure whose
 * layout differs between drivers; process_layout() explains the choice.
 */
#include "mem/nvml.h"

#include <dlfcn.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define NVML_LIBRARY "libnvidia-ml.so.1"

/* The most compute processes one GPU may list; more is reported, not allocated.
 */
#define MAX_PROCESSES 4096
/* Times the process list is asked again when it grew between two calls. */
#define MAX_PROCESS_TRIES 8
/* Room for this many processes at first; the buffer grows as NVML asks and is
 * kept. */
#define FIRST_PROCESSES 16

/* NVML's own types (nvmlReturn_t is an enum, so int-sized). */
typedef int nvml_return_t;
typedef struct nvml_device_s *nvml_device_t;

enum {
  NVML_SUCCESS = 0,
  NVML_ERROR_INSUFFICIENT_SIZE = 7,
};

/* usedGpuMemory when the driver cannot tell (always so under Windows WDDM). */
#define NVML_VALUE_NOT_AVAILABLE 0xFFFFFFFFFFFFFFFFULL

/* nvmlMemory_t, the v1 structure that nvmlDeviceGetMemoryInfo fills. */
typedef struct {
  unsigned long long total, free, used;
} nvml_memory_t;

/* nvmlProcessInfo_v1_t: what the unversioned
 * nvmlDeviceGetComputeRunningProcesses fills. */
typedef struct {
  unsigned pid;
  unsigned long long usedGpuMemory;
} nvml_process_v1_t;

/* nvmlProcessInfo_v2_t: what _v2 fills, and _v3 too with every driver but
 * R535's first releases. */
typedef struct {
  unsigned pid;
  unsigned long long usedGpuMemory;
  unsigned gpuInstanceId;
  unsigned computeInstanceId;
} nvml_process_v2_t;

/* nvmlProcessInfo_t as CUDA 12.2's nvml.h (driver R535) declared it for _v3: v2
 * plus protected memory. */
typedef struct {
  unsigned pid;
  unsigned long long usedGpuMemory;
  unsigned gpuInstanceId;
  unsigned computeInstanceId;
  unsigned long long usedGpuCcProtectedMemory;
} nvml_process_cc_t;

/* The two fields read sit at the same place in all three, so one reader serves
 * them all. */
_Static_assert(offsetof(nvml_process_v2_t, usedGpuMemory) == offsetof(nvml_process_v1_t, usedGpuMemory), "layout");
_Static_assert(offsetof(nvml_process_cc_t, usedGpuMemory) == offsetof(nvml_process_v1_t, usedGpuMemory), "layout");

typedef nvml_return_t (*nvml_init_fn)(void);
typedef nvml_return_t (*nvml_shutdown_fn)(void);
typedef nvml_return_t (*nvml_count_fn)(unsigned *count);
typedef nvml_return_t (*nvml_handle_fn)(unsigned index, nvml_device_t *device);
typedef nvml_return_t (*nvml_name_fn)(nvml_device_t device, char *name, unsigned length);
typedef nvml_return_t (*nvml_memory_fn)(nvml_device_t device, nvml_memory_t *memory);
typedef nvml_return_t (*nvml_processes_fn)(nvml_device_t device, unsigned *count, void *infos);
typedef const char *(*nvml_error_string_fn)(nvml_return_t result);

struct op_nvml_s {
  void *library;
  int initialised; /* nvmlInit_v2 succeeded: nvmlShutdown is owed */
  unsigned count;  /* GPUs seen at open */
  nvml_shutdown_fn shutdown;
  nvml_count_fn get_count;
  nvml_handle_fn get_handle;
  nvml_name_fn get_name;
  nvml_memory_fn get_memory;
  nvml_processes_fn get_processes;
  const char *processes_symbol;    /* the name of get_processes, for messages */
  size_t process_stride;           /* bytes per entry that get_processes writes */
  nvml_error_string_fn error_text; /* optional */
  unsigned char *processes;        /* kept between calls; room for processes_capacity long entries */
  unsigned processes_capacity;
};

static void *symbol(void *library, const char *name) {
  return dlsym(library, name);
}

/*
 * Picks the compute-process symbol and the size of the entries it writes.
 * _v3 has taken nvmlProcessInfo_t, which is nvmlProcessInfo_v2_t in every
 * nvml.h but CUDA 12.2's: there (driver R535) it gained
 * usedGpuCcProtectedMemory without a version bump, and later headers moved
 * that field to nvmlProcessDetail_v1_t (nvmlDeviceGetRunningProcessDetailList).
 * A driver that exports nvmlDeviceGetConfComputeMemSizeInfo (new in 12.2) but
 * not nvmlDeviceGetRunningProcessDetailList is taken to write the longer
 * entries, as nvitop does (its pull request #79). The buffer always has room
 * for the longer entries, so a wrong guess misreads but never overflows.
 */
static void process_layout(op_nvml_t *nvml) {
  nvml->get_processes = (nvml_processes_fn)symbol(nvml->library, "nvmlDeviceGetComputeRunningProcesses_v3");
  if (nvml->get_processes != NULL) {
    nvml->processes_symbol = "nvmlDeviceGetComputeRunningProcesses_v3";
    int cc_layout = symbol(nvml->library, "nvmlDeviceGetConfComputeMemSizeInfo") != NULL &&
                    symbol(nvml->library, "nvmlDeviceGetRunningProcessDetailList") == NULL;
    nvml->process_stride = cc_layout ? sizeof(nvml_process_cc_t) : sizeof(nvml_process_v2_t);
    return;
  }
  nvml->get_processes = (nvml_processes_fn)symbol(nvml->library, "nvmlDeviceGetComputeRunningProcesses_v2");
  if (nvml->get_processes != NULL) {
    nvml->processes_symbol = "nvmlDeviceGetComputeRunningProcesses_v2";
    nvml->process_stride = sizeof(nvml_process_v2_t);
    return;
  }
  nvml->get_processes = (nvml_processes_fn)symbol(nvml->library, "nvmlDeviceGetComputeRunningProcesses");
  nvml->processes_symbol = "nvmlDeviceGetComputeRunningProcesses";
  nvml->process_stride = sizeof(nvml_process_v1_t);
}

static const char *nvml_text(const op_nvml_t *nvml, nvml_return_t result) {
  const char *text = nvml->error_text != NULL ? nvml->error_text(result) : NULL;
  return text != NULL ? text : "no description";
}

/* An error from a call made after a successful open. */
static int nvml_failed(const op_nvml_t *nvml, op_error_t *err, const char *function, nvml_return_t result) {
  return op_error_set(err, OP_EIO, NULL, "NVML %s failed: %s (NVML error %d)", function, nvml_text(nvml, result),
                      result);
}

int op_nvml_open(op_nvml_t **out, op_error_t *err) {
  int rc = 0;
  nvml_init_fn init = NULL;
  nvml_return_t result = NVML_SUCCESS;
  const char *missing = NULL;

  *out = NULL;
  op_nvml_t *nvml = calloc(1, sizeof *nvml);
  if (nvml == NULL)
    return op_error_set(err, OP_ENOMEM, NULL, "out of memory opening NVML");

  nvml->library = dlopen(NVML_LIBRARY, RTLD_NOW | RTLD_LOCAL);
  if (nvml->library == NULL) {
    const char *why = dlerror();
    rc = op_error_set(err, OP_EUNSUPPORTED, "no_gpu", "no NVIDIA driver (%s): GPUs are not used",
                      why != NULL ? why : NVML_LIBRARY ": cannot be loaded");
    goto out;
  }

  nvml->error_text = (nvml_error_string_fn)symbol(nvml->library, "nvmlErrorString");
  init = (nvml_init_fn)symbol(nvml->library, "nvmlInit_v2");
  nvml->shutdown = (nvml_shutdown_fn)symbol(nvml->library, "nvmlShutdown");
  nvml->get_count = (nvml_count_fn)symbol(nvml->library, "nvmlDeviceGetCount_v2");
  nvml->get_handle = (nvml_handle_fn)symbol(nvml->library, "nvmlDeviceGetHandleByIndex_v2");
  nvml->get_name = (nvml_name_fn)symbol(nvml->library, "nvmlDeviceGetName");
  nvml->get_memory = (nvml_memory_fn)symbol(nvml->library, "nvmlDeviceGetMemoryInfo");
  process_layout(nvml);
  if (init == NULL)
    missing = "nvmlInit_v2";
  else if (nvml->shutdown == NULL)
    missing = "nvmlShutdown";
  else if (nvml->get_count == NULL)
    missing = "nvmlDeviceGetCount_v2";
  else if (nvml->get_handle == NULL)
    missing = "nvmlDeviceGetHandleByIndex_v2";
  else if (nvml->get_name == NULL)
    missing = "nvmlDeviceGetName";
  else if (nvml->get_memory == NULL)
    missing = "nvmlDeviceGetMemoryInfo";
  else if (nvml->get_processes == NULL)
    missing = "nvmlDeviceGetComputeRunningProcesses";
  if (missing != NULL) {
    rc = op_error_set(err, OP_EUNSUPPORTED, "no_gpu", "the NVIDIA driver is too old (%s has no %s): GPUs are not used",
                      NVML_LIBRARY, missing);
    goto out;
  }

  result = init();
  if (result != NVML_SUCCESS) {
    rc = op_error_set(err, OP_EUNSUPPORTED, "no_gpu", "no usable NVIDIA driver (nvmlInit_v2: %s): GPUs are not used",
                      nvml_text(nvml, result));
    goto out;
  }
  nvml->initialised = 1;

  result = nvml->get_count(&nvml->count);
  if (result != NVML_SUCCESS)
    rc = nvml_failed(nvml, err, "nvmlDeviceGetCount_v2", result);

out:
  if (rc != 0) {
    op_nvml_close(nvml);
    return rc;
  }
  *out = nvml;
  return 0;
}

unsigned op_nvml_count(const op_nvml_t *nvml) {
  return nvml->count;
}

static int device_handle(op_nvml_t *nvml, unsigned index, nvml_device_t *device, op_error_t *err) {
  if (index >= nvml->count)
    return op_error_set(err, OP_EUSAGE, NULL, "there is no GPU %u: NVML sees %u", index, nvml->count);
  nvml_return_t result = nvml->get_handle(index, device);
  if (result != NVML_SUCCESS)
    return nvml_failed(nvml, err, "nvmlDeviceGetHandleByIndex_v2", result);
  return 0;
}

int op_nvml_info(op_nvml_t *nvml, unsigned index, op_gpu_info_t *info, op_error_t *err) {
  nvml_device_t device = NULL;
  nvml_memory_t memory = {0};
  memset(info, 0, sizeof *info);
  int rc = device_handle(nvml, index, &device, err);
  if (rc != 0)
    return rc;
  nvml_return_t result = nvml->get_name(device, info->name, sizeof info->name);
  if (result != NVML_SUCCESS)
    return nvml_failed(nvml, err, "nvmlDeviceGetName", result);
  info->name[sizeof info->name - 1] = '\0';
  result = nvml->get_memory(device, &memory);
  if (result != NVML_SUCCESS)
    return nvml_failed(nvml, err, "nvmlDeviceGetMemoryInfo", result);
  info->total_bytes = memory.total;
  info->used_bytes = memory.used;
  return 0;
}

/* Makes room for capacity entries of the largest layout; the old list need not
 * survive. */
static int reserve_processes(op_nvml_t *nvml, unsigned capacity, op_error_t *err) {
  if (capacity <= nvml->processes_capacity)
    return 0;
  if (capacity > MAX_PROCESSES)
    return op_error_set(err, OP_ELIMIT, NULL, "NVML lists %u compute processes on one GPU, more than the %d we read",
                        capacity, MAX_PROCESSES);
  unsigned char *grown = malloc((size_t)capacity * sizeof(nvml_process_cc_t));
  if (grown == NULL)
    return op_error_set(err, OP_ENOMEM, NULL, "out of memory listing %u GPU processes", capacity);
  free(nvml->processes);
  nvml->processes = grown;
  nvml->processes_capacity = capacity;
  return 0;
}

static int pid_listed(pid_t pid, const pid_t *pids, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (pids[i] == pid)
      return 1;
  return 0;
}

int op_nvml_pids_used(op_nvml_t *nvml, unsigned index, const pid_t *pids, size_t n, uint64_t *bytes, op_error_t *err) {
  nvml_device_t device = NULL;
  nvml_return_t result = NVML_ERROR_INSUFFICIENT_SIZE;
  unsigned listed = 0;
  *bytes = 0;
  int rc = device_handle(nvml, index, &device, err);
  if (rc != 0)
    return rc;
  rc = reserve_processes(nvml, FIRST_PROCESSES, err);
  /* The list can grow between asking its size and reading it: ask again, a few
   * times. */
  for (int tries = 0; rc == 0 && tries < MAX_PROCESS_TRIES; tries++) {
    listed = nvml->processes_capacity;
    result = nvml->get_processes(device, &listed, nvml->processes);
    if (result != NVML_ERROR_INSUFFICIENT_SIZE)
      break;
    unsigned wanted = listed + listed / 2 + 8;
    rc = reserve_processes(nvml, wanted > listed ? wanted : MAX_PROCESSES + 1u, err);
  }
  if (rc != 0)
    return rc;
  if (result != NVML_SUCCESS)
    return nvml_failed(nvml, err, nvml->processes_symbol, result);
  if (listed > nvml->processes_capacity)
    return op_error_set(err, OP_EINTERNAL, NULL, "NVML %s reported %u processes in room for %u", nvml->processes_symbol,
                        listed, nvml->processes_capacity);

  uint64_t sum = 0;
  for (unsigned i = 0; i < listed; i++) {
    const unsigned char *entry = nvml->processes + (size_t)i * nvml->process_stride;
    unsigned pid;
    unsigned long long used;
    memcpy(&pid, entry + offsetof(nvml_process_v1_t, pid), sizeof pid);
    memcpy(&used, entry + offsetof(nvml_process_v1_t, usedGpuMemory), sizeof used);
    if (used != NVML_VALUE_NOT_AVAILABLE && pid_listed((pid_t)pid, pids, n))
      sum += used;
  }
  *bytes = sum;
  return 0;
}

void op_nvml_close(op_nvml_t *nvml) {
  if (nvml == NULL)
    return;
  if (nvml->initialised)
    nvml->shutdown();
  if (nvml->library != NULL)
    dlclose(nvml->library);
  free(nvml->processes);
  free(nvml);
}

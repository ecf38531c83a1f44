/*
 * nvml.h: NVIDIA GPUs through NVML, loaded at run time.
 *
 * libnvidia-ml.so.1 is opened with dlopen, so ocrpool has no build
 * dependency on the driver: a machine without one (the normal CPU-only case)
 * simply has no cuda devices. Only the calls below are used: init, device
 * count, handle by index, name, memory info, running compute processes, and
 * shutdown.
 */
#ifndef OCRPOOL_MEM_NVML_H
#define OCRPOOL_MEM_NVML_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/error.h"

typedef struct op_nvml_s op_nvml_t;

/** One GPU as NVML reports it. */
typedef struct op_gpu_info_s {
  char name[96];
  uint64_t total_bytes; /**< the card's memory */
  uint64_t used_bytes;  /**< used by every process on it, ours or not */
} op_gpu_info_t;

/**
 * Loads libnvidia-ml.so.1 and initialises NVML. OP_EUNSUPPORTED (with a
 * sentence in err) when the library or its driver is absent: the caller logs
 * it once and goes on with the CPU only.
 */
int op_nvml_open(op_nvml_t **nvml, op_error_t *err);

/** GPUs NVML sees. */
unsigned op_nvml_count(const op_nvml_t *nvml);

/** Name and memory of GPU index. */
int op_nvml_info(op_nvml_t *nvml, unsigned index, op_gpu_info_t *info, op_error_t *err);

/**
 * The VRAM that the processes pids[0..n) use on GPU index, summed, from
 * NVML's running compute processes. A pid NVML does not list uses none.
 */
int op_nvml_pids_used(op_nvml_t *nvml, unsigned index, const pid_t *pids, size_t n, uint64_t *bytes, op_error_t *err);

/** Shuts NVML down and unloads the library. NULL is fine. */
void op_nvml_close(op_nvml_t *nvml);

#endif

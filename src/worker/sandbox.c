/*
 * sandbox.c: confining a worker once it has started (see sandbox.h, and
 * docs/security.md for what each layer stops and why the allow-list holds
 * what it holds).
 *
 * The order matters: what needs privilege (a network namespace, opening the
 * paths the rules name, changing user) comes first; then no_new_privs, which
 * Landlock and an unprivileged seccomp filter require; then Landlock; the
 * seccomp filter last, since loading the others needs calls it refuses.
 */
#include "worker/sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/landlock.h>
#include <pwd.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "doc/doc.h"
#include "util/log.h"

/* Landlock rights newer than Debian 12's kernel headers (stable ABI values). */
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15)
#endif
#define OP_LANDLOCK_NET_BIND_TCP (1ULL << 0)
#define OP_LANDLOCK_NET_CONNECT_TCP (1ULL << 1)
#define OP_LANDLOCK_SCOPE_ABSTRACT_UNIX (1ULL << 0)
#define OP_LANDLOCK_SCOPE_SIGNAL (1ULL << 1)

/* The ruleset's attributes as ABI 6 has them; older kernels are given a prefix. */
typedef struct ruleset_attr_s {
  uint64_t handled_access_fs;
  uint64_t handled_access_net; /* ABI 4 */
  uint64_t scoped;             /* ABI 6 */
} ruleset_attr_t;

#define DEFAULT_MAX_FILE_BYTES (UINT64_C(4) << 30)
#define DEFAULT_MAX_OPEN_FILES 256u

void op_sandbox_config_init(op_sandbox_config_t *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->enabled = 1;
  cfg->max_file_bytes = DEFAULT_MAX_FILE_BYTES;
  cfg->max_open_files = DEFAULT_MAX_OPEN_FILES;
  /* Libraries, their data and Tesseract's default tessdata; nothing under /usr is a secret. */
  cfg->read_paths[cfg->n_read++] = "/usr";
  const char *tessdata = getenv("TESSDATA_PREFIX");
  if (tessdata != NULL && tessdata[0] != '\0')
    cfg->read_paths[cfg->n_read++] = tessdata;
}

int op_sandbox_add_read(op_sandbox_config_t *cfg, const char *path, op_error_t *err) {
  if (cfg->n_read >= OP_SANDBOX_MAX_PATHS)
    return op_error_set(err, OP_ELIMIT, "bad_options", "a sandbox names at most %u read-only paths",
                        OP_SANDBOX_MAX_PATHS);
  cfg->read_paths[cfg->n_read++] = path;
  return 0;
}

int op_sandbox_set_user(op_sandbox_config_t *cfg, const char *name, op_error_t *err) {
  if (geteuid() != 0 || name == NULL || name[0] == '\0')
    return 0;
  struct passwd pw, *found = NULL;
  char buf[4096];
  if (getpwnam_r(name, &pw, buf, sizeof buf, &found) != 0 || found == NULL)
    return op_error_set(err, OP_EUSAGE, "bad_config",
                        "server.worker_user: no user named \"%s\" on this machine (workers of a server run as root "
                        "become it; name another, or \"\" to keep root)",
                        name);
  if (pw.pw_uid == 0)
    return 0;
  cfg->uid = pw.pw_uid;
  cfg->gid = pw.pw_gid;
  cfg->drop_user = 1;
  return 0;
}

static json_t *string_array(const char *const *items, unsigned n) {
  json_t *a = json_array();
  for (unsigned i = 0; i < n; i++)
    json_array_append_new(a, json_string(items[i]));
  return a;
}

char *op_sandbox_encode(const op_sandbox_config_t *cfg) {
  json_t *j =
      json_pack("{s:b, s:s?, s:o, s:o, s:b, s:I, s:I, s:I, s:I}", "enabled", cfg->enabled, "tmp", cfg->tmp_dir, "write",
                string_array(cfg->write_dirs, cfg->n_write), "read", string_array(cfg->read_paths, cfg->n_read),
                "drop_user", cfg->drop_user, "uid", (json_int_t)cfg->uid, "gid", (json_int_t)cfg->gid, "max_file_bytes",
                (json_int_t)cfg->max_file_bytes, "max_open_files", (json_int_t)cfg->max_open_files);
  char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
  json_decref(j);
  return text;
}

json_t *op_sandbox_status_hello(const op_sandbox_status_t *st) {
  return json_pack("{s:b, s:b, s:i, s:b, s:b, s:b, s:I}", "enabled", st->enabled, "seccomp", st->seccomp, "landlock",
                   st->landlock_abi, "mountns", st->mountns, "netns", st->netns, "no_new_privs", st->no_new_privs,
                   "uid", (json_int_t)st->uid);
}

void op_sandbox_status_parse(json_t *obj, op_sandbox_status_t *st) {
  memset(st, 0, sizeof *st);
  st->uid = -1;
  if (!json_is_object(obj))
    return;
  st->known = 1;
  st->enabled = json_is_true(json_object_get(obj, "enabled"));
  st->seccomp = json_is_true(json_object_get(obj, "seccomp"));
  st->landlock_abi = (int)json_integer_value(json_object_get(obj, "landlock"));
  st->netns = json_is_true(json_object_get(obj, "netns"));
  st->mountns = json_is_true(json_object_get(obj, "mountns"));
  st->no_new_privs = json_is_true(json_object_get(obj, "no_new_privs"));
  st->uid = json_is_integer(json_object_get(obj, "uid")) ? (long)json_integer_value(json_object_get(obj, "uid")) : -1;
}

json_t *op_sandbox_status_json(const op_sandbox_status_t *st) {
  if (!st->known)
    return json_null();
  char user[64] = "";
  struct passwd pw, *found = NULL;
  char buf[1024];
  if (st->uid >= 0 && getpwuid_r((uid_t)st->uid, &pw, buf, sizeof buf, &found) == 0 && found != NULL)
    snprintf(user, sizeof user, "%s", pw.pw_name);
  else if (st->uid >= 0)
    snprintf(user, sizeof user, "%ld", st->uid);
  return json_pack("{s:b, s:b, s:s, s:i, s:s, s:b, s:s}", "enabled", st->enabled, "seccomp", st->seccomp, "filesystem",
                   st->landlock_abi > 0 ? "landlock"
                   : st->mountns        ? "mount_namespace"
                                        : "none",
                   "landlock_abi", st->landlock_abi, "network",
                   st->netns     ? "namespace"
                   : st->seccomp ? "seccomp"
                                 : "none",
                   "no_new_privs", st->no_new_privs, "user", user);
}

const char *op_sandbox_path(const op_sandbox_t *sb, const char *path) {
  size_t n = strlen(sb->cwd_prefix);
  if (path == NULL || n == 0 || strncmp(path, sb->cwd_prefix, n) != 0 || path[n] != '/')
    return path;
  return path + n + 1;
}

/* ---- the layers ---- */

/* RLIMIT_CORE 0 (a worker's memory holds documents), a bounded file size and
 * descriptor count; a limit already lower stays. */
static int set_limits(uint64_t max_file_bytes, unsigned max_open_files, op_error_t *err) {
  const struct {
    int resource;
    rlim_t value;
    const char *name;
  } limits[] = {{RLIMIT_CORE, 0, "RLIMIT_CORE"},
                {RLIMIT_FSIZE, (rlim_t)max_file_bytes, "RLIMIT_FSIZE"},
                {RLIMIT_NOFILE, (rlim_t)max_open_files, "RLIMIT_NOFILE"}};
  /* A file past the limit fails its write (EFBIG) instead of killing the worker. */
  signal(SIGXFSZ, SIG_IGN);
  for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
    struct rlimit rl;
    if (getrlimit(limits[i].resource, &rl) < 0)
      return op_error_set(err, OP_EINTERNAL, NULL, "getrlimit %s: %s", limits[i].name, strerror(errno));
    if (rl.rlim_max == RLIM_INFINITY || rl.rlim_max > limits[i].value)
      rl.rlim_max = limits[i].value;
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > rl.rlim_max)
      rl.rlim_cur = rl.rlim_max;
    if (setrlimit(limits[i].resource, &rl) < 0)
      return op_error_set(err, OP_EINTERNAL, NULL, "setrlimit %s: %s", limits[i].name, strerror(errno));
  }
  return 0;
}

/* Becomes uid:gid with no supplementary groups, for good (all three ids). The
 * kernel clears the parent-death signal and the dumpable flag on a change of
 * credentials: both are set again (dumpable so that /proc/self stays ours to
 * write, for the per-page memory peak, and a sanitizer's leak check may
 * trace its own threads). */
static int drop_user(uid_t uid, gid_t gid, op_error_t *err) {
  pid_t parent = getppid();
  if (setgroups(0, NULL) < 0 || setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0)
    return op_error_set(err, OP_EINTERNAL, NULL, "cannot become uid %u gid %u: %s", (unsigned)uid, (unsigned)gid,
                        strerror(errno));
  if (getuid() != uid || geteuid() != uid || setuid(0) == 0)
    return op_error_set(err, OP_EINTERNAL, NULL, "the change to uid %u did not hold", (unsigned)uid);
  prctl(PR_SET_DUMPABLE, 1);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) /* the server died in between: the signal came too late to be sent */
    _exit(1);
  return 0;
}

/* One Landlock rule: fd's tree (or file) may be accessed with rights. */
static int landlock_rule(int ruleset, int fd, uint64_t rights, uint64_t handled) {
  struct stat st;
  if (fstat(fd, &st) < 0)
    return -1;
  const uint64_t file_rights = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE |
                               LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_TRUNCATE |
                               LANDLOCK_ACCESS_FS_IOCTL_DEV;
  struct landlock_path_beneath_attr rule = {.allowed_access = rights & handled, .parent_fd = fd};
  if (!S_ISDIR(st.st_mode))
    rule.allowed_access &= file_rights;
  return (int)syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &rule, 0);
}

typedef struct rule_fd_s {
  int fd;
  uint64_t rights;
  const char *path; /* for the mount namespace, which rebuilds the tree from these */
} rule_fd_t;

/* Opens the paths the rules name while this process may still reach them. A
 * missing read-only path is left out; a missing scratch root is an error. */
static int open_rules(const op_sandbox_config_t *cfg, rule_fd_t *rules, unsigned *n, op_error_t *err) {
  const uint64_t read = LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR;
  const uint64_t write = read | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_TRUNCATE |
                         LANDLOCK_ACCESS_FS_MAKE_REG | LANDLOCK_ACCESS_FS_MAKE_DIR | LANDLOCK_ACCESS_FS_REMOVE_FILE |
                         LANDLOCK_ACCESS_FS_REMOVE_DIR;
  static const char *const devices[] = {"/dev/null", "/dev/zero", "/dev/urandom"};
  *n = 0;
  for (unsigned i = 0; i < cfg->n_write; i++) {
    int fd = open(cfg->write_dirs[i], O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
      return op_error_set(err, OP_EIO, "internal", "sandbox: the scratch directory %s: %s", cfg->write_dirs[i],
                          strerror(errno));
    rules[(*n)++] = (rule_fd_t){fd, write, cfg->write_dirs[i]};
  }
  for (unsigned i = 0; i < cfg->n_read; i++) {
    int fd = open(cfg->read_paths[i], O_PATH | O_CLOEXEC);
    if (fd >= 0)
      rules[(*n)++] = (rule_fd_t){fd, read, cfg->read_paths[i]};
  }
  for (size_t i = 0; i < sizeof devices / sizeof devices[0]; i++) {
    int fd = open(devices[i], O_PATH | O_CLOEXEC);
    if (fd >= 0)
      rules[(*n)++] = (rule_fd_t){fd, read | LANDLOCK_ACCESS_FS_WRITE_FILE, devices[i]};
  }
  /* Our own /proc/PID (its status, clear_refs and the sanitizers' maps): not another process's. */
  static char own_proc[32];
  snprintf(own_proc, sizeof own_proc, "/proc/%ld", (long)getpid());
  int fd = open(own_proc, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0)
    rules[(*n)++] = (rule_fd_t){fd, read | LANDLOCK_ACCESS_FS_WRITE_FILE, own_proc};
  return 0;
}

/* The kernel's Landlock ABI; 0 or below: none. */
static int landlock_abi(void) {
  return (int)syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
}

/* Restricts this process to the rules' paths; returns the ABI in force, 0
 * when the kernel has no Landlock, <0 on a failure. No TCP either (ABI 4),
 * no abstract sockets or signals out of the sandbox (ABI 6). */
static int enter_landlock(int abi, const rule_fd_t *rules, unsigned n, op_error_t *err) {
  if (abi <= 0)
    return 0;
  ruleset_attr_t attr = {.handled_access_fs = (1ULL << 13) - 1}; /* ABI 1: EXECUTE .. MAKE_SYM */
  size_t size = sizeof attr.handled_access_fs;
  if (abi >= 2)
    attr.handled_access_fs |= LANDLOCK_ACCESS_FS_REFER;
  if (abi >= 3)
    attr.handled_access_fs |= LANDLOCK_ACCESS_FS_TRUNCATE;
  if (abi >= 5)
    attr.handled_access_fs |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
  if (abi >= 4) {
    attr.handled_access_net = OP_LANDLOCK_NET_BIND_TCP | OP_LANDLOCK_NET_CONNECT_TCP;
    size = offsetof(ruleset_attr_t, scoped);
  }
  if (abi >= 6) {
    attr.scoped = OP_LANDLOCK_SCOPE_ABSTRACT_UNIX | OP_LANDLOCK_SCOPE_SIGNAL;
    size = sizeof attr;
  }
  int ruleset = (int)syscall(SYS_landlock_create_ruleset, &attr, size, 0);
  if (ruleset < 0)
    return op_error_set(err, OP_EINTERNAL, NULL, "landlock_create_ruleset: %s", strerror(errno));
  int rc = abi;
  for (unsigned i = 0; i < n; i++)
    if (landlock_rule(ruleset, rules[i].fd, rules[i].rights, attr.handled_access_fs) < 0) {
      rc = op_error_set(err, OP_EINTERNAL, NULL, "landlock_add_rule: %s", strerror(errno));
      goto out;
    }
  if (syscall(SYS_landlock_restrict_self, ruleset, 0) < 0)
    rc = op_error_set(err, OP_EINTERNAL, NULL, "landlock_restrict_self: %s", strerror(errno));
out:
  close(ruleset);
  return rc;
}

/* ---- the mount namespace: where the kernel has no Landlock ---- */

#define NEW_ROOT "/tmp" /* any directory: the tmpfs over it becomes the root, and /tmp itself is never bound */

/* Makes path (absolute) inside the new root: its directories, and itself as
 * a directory or an empty file to bind a file over. */
static int make_point(const char *path, int dir) {
  char buf[PATH_MAX];
  if (snprintf(buf, sizeof buf, "%s%s", NEW_ROOT, path) >= (int)sizeof buf)
    return -1;
  for (char *p = buf + strlen(NEW_ROOT) + 1; (p = strchr(p, '/')) != NULL; p++) {
    *p = '\0';
    if (mkdir(buf, 0755) < 0 && errno != EEXIST)
      return -1;
    *p = '/';
  }
  if (access(buf, F_OK) == 0) /* inside a tree bound before (read-only, perhaps) */
    return 0;
  if (dir)
    return mkdir(buf, 0755);
  int fd = open(buf, O_RDONLY | O_CREAT | O_CLOEXEC, 0600);
  return fd < 0 ? -1 : close(fd);
}

/* A mount namespace of the worker's own, its mounts private; needs
 * CAP_SYS_ADMIN, so root only. 1 done, 0 not possible here. */
static int unshare_mounts(void) {
  return geteuid() == 0 && unshare(CLONE_NEWNS) == 0 && mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0;
}

/*
 * In the namespace unshare_mounts made: the root becomes an empty tmpfs
 * holding only the rules' paths, bound from the descriptors open_rules opened
 * (so a path below the directory the tmpfs covers is still reached),
 * read-only where the rule is. The descriptors must be opened after the
 * unshare: the kernel binds only mounts of the caller's namespace. 1, or <0.
 */
static int enter_mount_namespace(const rule_fd_t *rules, unsigned n, op_error_t *err) {
  const char *step = "the tmpfs root";
  if (mount("ocrpool-worker", NEW_ROOT, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=0755") < 0)
    goto fail;
  unsigned order[OP_SANDBOX_MAX_PATHS + 8];
  for (unsigned i = 0; i < n; i++) { /* shorter paths first: a parent never covers what is bound inside it */
    unsigned j = i;
    for (; j > 0 && strlen(rules[order[j - 1]].path) > strlen(rules[i].path); j--)
      order[j] = order[j - 1];
    order[j] = i;
  }
  for (unsigned k = 0; k < n; k++) {
    unsigned i = order[k];
    struct stat sb;
    char from[64], to[PATH_MAX];
    step = rules[i].path;
    if (fstat(rules[i].fd, &sb) < 0 || make_point(rules[i].path, S_ISDIR(sb.st_mode)) < 0)
      goto fail;
    snprintf(from, sizeof from, "/proc/self/fd/%d", rules[i].fd);
    snprintf(to, sizeof to, "%s%s", NEW_ROOT, rules[i].path);
    if (mount(from, to, NULL, MS_BIND | MS_REC, NULL) < 0)
      goto fail;
    unsigned long ro = (rules[i].rights & LANDLOCK_ACCESS_FS_MAKE_REG) ? 0 : MS_RDONLY;
    if (S_ISCHR(sb.st_mode))
      ro = 0; /* /dev/null and the like: written to, and need their device */
    else if (mount(NULL, to, NULL, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | ro, NULL) < 0)
      goto fail;
  }
  step = "/proc/self";
  char self[64], pid[24];
  snprintf(self, sizeof self, "%s/proc/self", NEW_ROOT);
  snprintf(pid, sizeof pid, "%ld", (long)getpid());
  if (symlink(pid, self) < 0 && errno != EEXIST)
    goto fail;
  step = "pivot_root";
  char old[64];
  snprintf(old, sizeof old, "%s/.old", NEW_ROOT);
  if (mkdir(old, 0700) < 0 || syscall(SYS_pivot_root, NEW_ROOT, old) < 0 || chdir("/") < 0 ||
      umount2("/.old", MNT_DETACH) < 0 || rmdir("/.old") < 0)
    goto fail;
  /* The tmpfs itself: nothing more may be made in it. */
  if (mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0)
    step = "the read-only root";
  else
    return 1;
fail:
  return op_error_set(err, OP_EINTERNAL, NULL, "sandbox: the mount namespace (%s): %s", step, strerror(errno));
}

/*
 * The system calls a worker makes after start-up: reading and writing files
 * in its sandbox, memory, threads of its own, time, signals to itself, and its
 * socketpair (already open). Left out, so fatal: execve, fork (clone without
 * CLONE_THREAD), socket, connect, bind, ptrace, mount, chroot, setuid and the
 * other credential calls, bpf, keyctl, module and reboot calls, and the rest.
 */
#if !defined(__SANITIZE_ADDRESS__)
static const char *const allowed_calls[] = {
    /* files */
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2", "pwritev2", "open",
    "openat", "openat2", "creat", "close", "close_range", "stat", "fstat", "lstat", "newfstatat", "statx", "statfs",
    "fstatfs", "lseek", "access", "faccessat", "faccessat2", "readlink", "readlinkat", "getdents64", "getcwd", "chdir",
    "fchdir", "mkdir", "mkdirat", "rmdir", "unlink", "unlinkat", "rename", "renameat", "renameat2", "ftruncate",
    "truncate", "fallocate", "fsync", "fdatasync", "fadvise64", "flock", "fcntl", "dup", "dup2", "dup3", "pipe",
    "pipe2", "ioctl", "umask", "fchmod", "utimensat",
    /* the socketpair to the supervisor, and waiting */
    "sendmsg", "recvmsg", "sendto", "recvfrom", "shutdown", "getsockopt", "poll", "ppoll", "select", "pselect6",
    "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait",
    /* memory */
    "brk", "mmap", "munmap", "mprotect", "mremap", "madvise", "mincore", "msync", "mlock", "munlock", "get_mempolicy",
    /* threads and signals */
    "futex", "set_robust_list", "get_robust_list", "set_tid_address", "rseq", "membarrier", "sched_yield",
    "sched_getaffinity", "sched_getparam", "sched_getscheduler", "getpriority", "rt_sigaction", "rt_sigprocmask",
    "rt_sigreturn", "rt_sigpending", "rt_sigtimedwait", "rt_sigsuspend", "sigaltstack", "restart_syscall", "arch_prctl",
    "prctl", "exit", "exit_group",
    /* identity and time */
    "getpid", "gettid", "getppid", "getuid", "geteuid", "getgid", "getegid", "getgroups", "getresuid", "getresgid",
    "getpgrp", "getpgid", "getsid", "uname", "sysinfo", "getrandom", "clock_gettime", "clock_getres", "clock_nanosleep",
    "nanosleep", "gettimeofday", "time", "times", "getrusage", "getrlimit", "setrlimit", "getitimer", "setitimer",
    NULL};

#endif

#if defined(__SANITIZE_ADDRESS__)
/* The sanitizer build: LeakSanitizer's check at exit runs in a helper process
 * that traces the worker with calls of its own, so the filter there refuses
 * only what test_sandbox probes and the worst of the rest, and allows the
 * others; the release build keeps the allow-list. */
static const char *const sanitizer_denied[] = {"execve", "execveat", "socket", "connect", "bind",   "listen",
                                               "accept", "accept4",  "mount",  "umount2", "chroot", "setuid",
                                               "setgid", "unshare",  "setns",  "bpf",     NULL};
#endif

/* Adds one rule for the call name; a call this architecture lacks is skipped. */
static int add_rule(scmp_filter_ctx ctx, uint32_t action, const char *name, unsigned n_args,
                    const struct scmp_arg_cmp *args) {
  int nr = seccomp_syscall_resolve_name(name);
  if (nr == __NR_SCMP_ERROR)
    return 0;
  return seccomp_rule_add_array(ctx, action, nr, n_args, args);
}

#if defined(__SANITIZE_ADDRESS__)
#define FILTER_DEFAULT SCMP_ACT_ALLOW
static int add_rules(scmp_filter_ctx ctx) {
  int rc = 0;
  for (size_t i = 0; rc == 0 && sanitizer_denied[i] != NULL; i++)
    rc = add_rule(ctx, SCMP_ACT_KILL_PROCESS, sanitizer_denied[i], 0, NULL);
  return rc;
}
#else
#define FILTER_DEFAULT SCMP_ACT_KILL_PROCESS
static int add_rules(scmp_filter_ctx ctx) {
  int rc = 0;
  for (size_t i = 0; rc == 0 && allowed_calls[i] != NULL; i++)
    rc = add_rule(ctx, SCMP_ACT_ALLOW, allowed_calls[i], 0, NULL);
  scmp_datum_t self = (scmp_datum_t)getpid();
  /* Spelled out: SCMP_A0 leaves datum_b to the compiler, which clang's -Wextra refuses. */
  struct scmp_arg_cmp own_pid = {.arg = 0, .op = SCMP_CMP_EQ, .datum_a = self, .datum_b = 0};
  /* Signals to this process only (abort, raise); prlimit on itself only. */
  rc = rc ? rc : add_rule(ctx, SCMP_ACT_ALLOW, "kill", 1, &own_pid);
  rc = rc ? rc : add_rule(ctx, SCMP_ACT_ALLOW, "tgkill", 1, &own_pid);
  struct scmp_arg_cmp pid_zero = {.arg = 0, .op = SCMP_CMP_EQ, .datum_a = 0, .datum_b = 0};
  rc = rc ? rc : add_rule(ctx, SCMP_ACT_ALLOW, "prlimit64", 1, &pid_zero);
  rc = rc ? rc : add_rule(ctx, SCMP_ACT_ALLOW, "prlimit64", 1, &own_pid);
  /* Threads, never processes. */
  struct scmp_arg_cmp thread = {.arg = 0, .op = SCMP_CMP_MASKED_EQ, .datum_a = CLONE_THREAD, .datum_b = CLONE_THREAD};
  rc = rc ? rc : add_rule(ctx, SCMP_ACT_ALLOW, "clone", 1, &thread);
  /* clone3's flags are out of the filter's reach: refused, so that glibc falls back to clone. */
  rc = rc ? rc : add_rule(ctx, SCMP_ACT_ERRNO(ENOSYS), "clone3", 0, NULL);
  return rc;
}
#endif

static int enter_seccomp(op_error_t *err) {
  scmp_filter_ctx ctx = seccomp_init(FILTER_DEFAULT);
  if (ctx == NULL)
    return op_error_set(err, OP_EINTERNAL, NULL, "seccomp_init failed");
  int rc = add_rules(ctx);
  if (rc == 0)
    rc = seccomp_load(ctx);
  seccomp_release(ctx);
  if (rc < 0)
    return op_error_set(err, OP_EINTERNAL, NULL, "seccomp: %s", strerror(-rc));
  return 0;
}

/* ---- entering ---- */

static int decode(const char *text, op_sandbox_config_t *cfg, json_t **root, op_error_t *err) {
  json_error_t je;
  memset(cfg, 0, sizeof *cfg);
  *root = json_loads(text, 0, &je);
  json_t *j = *root;
  if (!json_is_object(j))
    return op_error_set(err, OP_EUSAGE, "bad_options", "--sandbox: not a JSON object: %s", je.text);
  cfg->enabled = json_is_true(json_object_get(j, "enabled"));
  cfg->tmp_dir = json_string_value(json_object_get(j, "tmp"));
  size_t i;
  json_t *v;
  json_array_foreach(json_object_get(j, "write"), i, v) {
    if (json_is_string(v) && cfg->n_write < sizeof cfg->write_dirs / sizeof cfg->write_dirs[0])
      cfg->write_dirs[cfg->n_write++] = json_string_value(v);
  }
  json_array_foreach(json_object_get(j, "read"), i, v) {
    if (json_is_string(v) && cfg->n_read < OP_SANDBOX_MAX_PATHS)
      cfg->read_paths[cfg->n_read++] = json_string_value(v);
  }
  cfg->drop_user = json_is_true(json_object_get(j, "drop_user"));
  cfg->uid = (uid_t)json_integer_value(json_object_get(j, "uid"));
  cfg->gid = (gid_t)json_integer_value(json_object_get(j, "gid"));
  cfg->max_file_bytes = (uint64_t)json_integer_value(json_object_get(j, "max_file_bytes"));
  cfg->max_open_files = (unsigned)json_integer_value(json_object_get(j, "max_open_files"));
  if (cfg->max_file_bytes == 0)
    cfg->max_file_bytes = DEFAULT_MAX_FILE_BYTES;
  if (cfg->max_open_files == 0)
    cfg->max_open_files = DEFAULT_MAX_OPEN_FILES;
  return 0;
}

int op_sandbox_enter(const char *text, op_sandbox_t *sb, op_error_t *err) {
  memset(sb, 0, sizeof *sb);
  sb->status.known = 1;
  sb->status.uid = (long)getuid();
  op_sandbox_config_t cfg;
  json_t *root = NULL;
  rule_fd_t rules[OP_SANDBOX_MAX_PATHS + 8];
  unsigned n_rules = 0;
  int rc = text != NULL ? decode(text, &cfg, &root, err) : 0;
  if (rc < 0 || text == NULL || !cfg.enabled)
    goto out;
  sb->status.enabled = 1;
  if ((rc = set_limits(cfg.max_file_bytes, cfg.max_open_files, err)) < 0)
    goto out;
  /* Needs CAP_SYS_ADMIN; without it the seccomp filter still keeps sockets out. */
  sb->status.netns = geteuid() == 0 && unshare(CLONE_NEWNET) == 0;
  /* Landlock where the kernel has it; else (or when OCRPOOL_SANDBOX_FS=mount
   * asks, for tests and for kernels whose Landlock is off) a mount namespace. */
  const char *fs = getenv("OCRPOOL_SANDBOX_FS");
  int want_mount = fs != NULL && strcmp(fs, "mount") == 0;
  int abi = landlock_abi();
  int mounts = (want_mount || abi <= 0) && unshare_mounts();
  if ((rc = open_rules(&cfg, rules, &n_rules, err)) < 0)
    goto out;
  if (mounts) {
    if ((rc = enter_mount_namespace(rules, n_rules, err)) < 0)
      goto out;
    sb->status.mountns = 1;
  }
  if (cfg.drop_user && geteuid() == 0) {
    /* Jobs name files below the scratch root, whose parents the new user may not pass. */
    if (cfg.n_write == 0 || chdir(cfg.write_dirs[0]) < 0) {
      rc = op_error_set(err, OP_EIO, "internal", "sandbox: cannot enter the scratch directory: %s", strerror(errno));
      goto out;
    }
    snprintf(sb->cwd_prefix, sizeof sb->cwd_prefix, "%s", cfg.write_dirs[0]);
    if ((rc = drop_user(cfg.uid, cfg.gid, err)) < 0)
      goto out;
    sb->status.uid = (long)cfg.uid;
  }
  /* Leptonica's temporary files (its PDF image encoding) go there, not to /tmp. */
  if (cfg.tmp_dir != NULL)
    op_doc_set_temp_dir(op_sandbox_path(sb, cfg.tmp_dir));
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
    rc = op_error_set(err, OP_EINTERNAL, NULL, "PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
    goto out;
  }
  sb->status.no_new_privs = 1;
  if (!sb->status.mountns) {
    if ((rc = enter_landlock(abi, rules, n_rules, err)) < 0)
      goto out;
    sb->status.landlock_abi = rc;
  }
  if ((rc = enter_seccomp(err)) < 0)
    goto out;
  sb->status.seccomp = 1;
out:
  for (unsigned i = 0; i < n_rules; i++)
    close(rules[i].fd);
  json_decref(root);
  return rc < 0 ? rc : 0;
}

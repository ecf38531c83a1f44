/* fs.h: file-system helpers shared by the modules that own directories. */
#ifndef OCRPOOL_UTIL_FS_H
#define OCRPOOL_UTIL_FS_H

/** Removes dir and everything below it, not following symbolic links; what cannot be removed stays. */
void op_remove_tree(const char *dir);

/** Seconds since the epoch, as a double (wall clock: for records, not for intervals). */
double op_wall_time_s(void);

#endif

/* Files: read whole / map read-only, and crash-safe writes. An atomic write goes
 * to a temporary file beside the target, is flushed and fsynced, renamed over
 * the target, and the directory is fsynced: a reader sees the old file or the
 * new one, never a torn one. */
#ifndef KEEL_IO_FILE_H
#define KEEL_IO_FILE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../core/error.h"

typedef struct keel_mapped {
  const uint8_t *data; /* (size) read-only */
  size_t size;
} keel_mapped;

keel_status keel_file_map(keel_mapped *m, const char *path);
void keel_file_unmap(keel_mapped *m);
/* Reads a whole file into a NUL-terminated heap buffer. */
keel_status keel_file_read(const char *path, char **data, size_t *size);

typedef struct keel_afile {
  FILE *fp;
  char *path;     /* final name */
  char *tmp_path; /* where bytes go until commit */
  int failed;
} keel_afile;

keel_status keel_afile_open(keel_afile *f, const char *path);
keel_status keel_afile_write(keel_afile *f, const void *data, size_t len);
/* fsync, close, rename into place, fsync the directory. Frees f either way. */
keel_status keel_afile_commit(keel_afile *f);
/* Removes the temporary file; the target is untouched. */
void keel_afile_abort(keel_afile *f);

keel_status keel_write_atomic(const char *path, const void *data, size_t len);
keel_status keel_fsync_dir_of(const char *path);
/* "a/b" in a new heap string. */
char *keel_path_join(const char *a, const char *b);
/* mkdir -p */
keel_status keel_mkdirs(const char *path);
int keel_path_exists(const char *path);
int keel_is_dir(const char *path);

#endif

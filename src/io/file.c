/* File helpers: mmap, whole-file reads, atomic writes (redis-style). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

keel_status keel_file_map(keel_mapped *m, const char *path) {
  m->data = NULL;
  m->size = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return keel_fail(KEEL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return keel_fail(KEEL_ERR_IO, "%s: not a regular file", path);
  }
  m->size = (size_t)st.st_size;
  if (m->size == 0) {
    close(fd);
    m->data = (const uint8_t *)"";
    return KEEL_OK;
  }
  void *p = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (p == MAP_FAILED) return keel_fail(KEEL_ERR_IO, "%s: mmap failed: %s", path, strerror(errno));
  m->data = p;
  return KEEL_OK;
}

void keel_file_unmap(keel_mapped *m) {
  if (m->data && m->size) munmap((void *)m->data, m->size);
  m->data = NULL;
  m->size = 0;
}

keel_status keel_file_read(const char *path, char **data, size_t *size) {
  *data = NULL;
  *size = 0;
  FILE *fp = fopen(path, "rb");
  if (!fp) return keel_fail(KEEL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  size_t cap = 1 << 16, n = 0;
  char *buf = keel_xmalloc(cap);
  for (;;) {
    if (n + 1 >= cap) buf = keel_xrealloc(buf, cap *= 2);
    size_t got = fread(buf + n, 1, cap - n - 1, fp);
    n += got;
    if (got == 0) break;
  }
  int err = ferror(fp);
  fclose(fp);
  if (err) {
    free(buf);
    return keel_fail(KEEL_ERR_IO, "%s: read error", path);
  }
  buf[n] = 0;
  *data = buf;
  *size = n;
  return KEEL_OK;
}

keel_status keel_afile_open(keel_afile *f, const char *path) {
  memset(f, 0, sizeof *f);
  size_t n = strlen(path) + 32;
  f->path = keel_xstrdup(path);
  f->tmp_path = keel_xmalloc(n);
  snprintf(f->tmp_path, n, "%s.tmp.%ld", path, (long)getpid());
  f->fp = fopen(f->tmp_path, "wb");
  if (!f->fp) {
    keel_status st = keel_fail(KEEL_ERR_IO, "%s: cannot create: %s", f->tmp_path, strerror(errno));
    free(f->path);
    free(f->tmp_path);
    f->path = f->tmp_path = NULL;
    return st;
  }
  return KEEL_OK;
}

keel_status keel_afile_write(keel_afile *f, const void *data, size_t len) {
  if (f->failed) return KEEL_ERR_IO;
  if (len && fwrite(data, 1, len, f->fp) != len) {
    f->failed = 1;
    return keel_fail(KEEL_ERR_IO, "%s: write failed: %s", f->tmp_path, strerror(errno));
  }
  return KEEL_OK;
}

static void afile_release(keel_afile *f) {
  free(f->path);
  free(f->tmp_path);
  f->path = f->tmp_path = NULL;
  f->fp = NULL;
}

void keel_afile_abort(keel_afile *f) {
  if (f->fp) fclose(f->fp);
  if (f->tmp_path) unlink(f->tmp_path);
  afile_release(f);
}

keel_status keel_afile_commit(keel_afile *f) {
  if (f->failed || fflush(f->fp) != 0 || fsync(fileno(f->fp)) != 0) {
    keel_status st = f->failed ? KEEL_ERR_IO
                               : keel_fail(KEEL_ERR_IO, "%s: flush failed: %s", f->tmp_path,
                                           strerror(errno));
    keel_afile_abort(f);
    return st;
  }
  if (fclose(f->fp) != 0) {
    f->fp = NULL;
    keel_status st = keel_fail(KEEL_ERR_IO, "%s: close failed: %s", f->tmp_path, strerror(errno));
    keel_afile_abort(f);
    return st;
  }
  f->fp = NULL;
  if (rename(f->tmp_path, f->path) != 0) {
    keel_status st = keel_fail(KEEL_ERR_IO, "%s: rename failed: %s", f->path, strerror(errno));
    keel_afile_abort(f);
    return st;
  }
  keel_status st = keel_fsync_dir_of(f->path);
  afile_release(f);
  return st;
}

keel_status keel_write_atomic(const char *path, const void *data, size_t len) {
  keel_afile f;
  keel_status st = keel_afile_open(&f, path);
  if (st) return st;
  if ((st = keel_afile_write(&f, data, len))) {
    keel_afile_abort(&f);
    return st;
  }
  return keel_afile_commit(&f);
}

keel_status keel_fsync_dir_of(const char *path) {
  char *copy = keel_xstrdup(path);
  const char *dir = dirname(copy);
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  keel_status st = KEEL_OK;
  if (fd < 0 || fsync(fd) != 0)
    st = keel_fail(KEEL_ERR_IO, "%s: cannot fsync directory: %s", dir, strerror(errno));
  if (fd >= 0) close(fd);
  free(copy);
  return st;
}

char *keel_path_join(const char *a, const char *b) {
  size_t n = strlen(a) + strlen(b) + 2;
  char *p = keel_xmalloc(n);
  snprintf(p, n, "%s/%s", a, b);
  return p;
}

keel_status keel_mkdirs(const char *path) {
  char *p = keel_xstrdup(path);
  for (char *s = p + 1; *s; s++) {
    if (*s != '/') continue;
    *s = 0;
    if (mkdir(p, 0777) != 0 && errno != EEXIST) goto fail;
    *s = '/';
  }
  if (mkdir(p, 0777) != 0 && errno != EEXIST) goto fail;
  free(p);
  return KEEL_OK;
fail:;
  keel_status st = keel_fail(KEEL_ERR_IO, "%s: cannot create directory: %s", p, strerror(errno));
  free(p);
  return st;
}

int keel_path_exists(const char *path) { return access(path, F_OK) == 0; }

int keel_is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* safetensors files: a validating, mmap-based reader and a writer.
 * Layout: u64 LE header length N, N bytes of JSON header, then the data. */
#ifndef KEEL_IO_SAFETENSORS_H
#define KEEL_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "../core/dtype.h"
#include "../core/error.h"
#include "file.h"

#define KEEL_ST_MAX_DIMS 8
#define KEEL_ST_MAX_HEADER (100u << 20)

typedef struct keel_st_tensor {
  char *name;
  keel_dtype dtype;
  int ndim;
  int64_t shape[KEEL_ST_MAX_DIMS];
  const void *data; /* (nbytes) inside the mapping; NULL-safe when nbytes == 0 */
  size_t nbytes;
  size_t offset;    /* byte offset of data in the file */
} keel_st_tensor;

typedef struct keel_st_file {
  keel_mapped map;
  keel_st_tensor *tensors; /* (n), in file order of data_offsets */
  int n;
  char **meta_keys, **meta_values; /* (n_meta) __metadata__ */
  int n_meta;
} keel_st_file;

/* Opens and fully validates a file. Errors name the file and byte offset. */
keel_status keel_st_open(keel_st_file *f, const char *path);
/* Validates a file already in memory (used by the fuzz target); data is borrowed. */
keel_status keel_st_parse(keel_st_file *f, const uint8_t *data, size_t size, const char *name);
void keel_st_close(keel_st_file *f);
const keel_st_tensor *keel_st_find(const keel_st_file *f, const char *name);
int64_t keel_st_numel(const keel_st_tensor *t);

typedef struct keel_st_writer {
  keel_st_tensor *tensors; /* data pointers borrowed until save */
  int n, cap;
  char **meta_keys, **meta_values;
  int n_meta;
} keel_st_writer;

void keel_st_writer_init(keel_st_writer *w);
void keel_st_writer_add(keel_st_writer *w, const char *name, keel_dtype dtype, int ndim,
                        const int64_t *shape, const void *data);
void keel_st_writer_meta(keel_st_writer *w, const char *key, const char *value);
/* Writes atomically (temporary file, fsync, rename). */
keel_status keel_st_writer_save(keel_st_writer *w, const char *path);
void keel_st_writer_free(keel_st_writer *w);

#endif

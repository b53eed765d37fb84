/* JSON through jansson, with errors that name the file, line, column and byte. */
#ifndef KEEL_IO_JSON_H
#define KEEL_IO_JSON_H

#include <jansson.h>

#include "../core/error.h"

/* Parses a file; rejects duplicate keys. */
keel_status keel_json_load_file(json_t **out, const char *path);
keel_status keel_json_load_buf(json_t **out, const char *buf, size_t len, const char *name);
/* Writes with sorted-free, indented output, atomically. */
keel_status keel_json_save_file(const json_t *j, const char *path, int indent);

#endif

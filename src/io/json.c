/* jansson wrappers. */
#include "json.h"

#include <stdlib.h>
#include <string.h>

#include "file.h"

static keel_status json_error(const json_error_t *e, const char *name) {
  return keel_fail(KEEL_ERR_FORMAT, "%s: invalid JSON at line %d, column %d (byte %d): %s", name,
                   e->line, e->column, e->position, e->text);
}

keel_status keel_json_load_buf(json_t **out, const char *buf, size_t len, const char *name) {
  json_error_t e;
  *out = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &e);
  return *out ? KEEL_OK : json_error(&e, name);
}

keel_status keel_json_load_file(json_t **out, const char *path) {
  char *buf;
  size_t len;
  *out = NULL;
  keel_status st = keel_file_read(path, &buf, &len);
  if (st) return st;
  st = keel_json_load_buf(out, buf, len, path);
  free(buf);
  return st;
}

keel_status keel_json_save_file(const json_t *j, const char *path, int indent) {
  char *s = json_dumps(j, JSON_INDENT(indent));
  if (!s) return keel_fail(KEEL_ERR_NOMEM, "%s: cannot serialise JSON", path);
  size_t n = strlen(s);
  s[n] = '\n';
  keel_status st = keel_write_atomic(path, s, n + 1);
  free(s);
  return st;
}

/* Event log: opened, appended and closed per event so a crash loses nothing written. */
#include "events.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

void keel_event(const char *run, const char *name, const char *fields, ...) {
  size_t n = strlen(run) + 16;
  char *path = malloc(n);
  if (!path) return;
  snprintf(path, n, "%s/events.jsonl", run);
  FILE *fp = fopen(path, "a");
  free(path);
  if (!fp) return;
  struct timeval tv;
  gettimeofday(&tv, NULL);
  fprintf(fp, "{\"time\": %.3f, \"pid\": %ld, \"event\": \"%s\"", (double)tv.tv_sec + tv.tv_usec / 1e6, (long)getpid(),
          name);
  if (fields && *fields) {
    va_list ap;
    va_start(ap, fields);
    fputs(", ", fp);
    vfprintf(fp, fields, ap);
    va_end(ap);
  }
  fputs("}\n", fp);
  fflush(fp);
  fsync(fileno(fp));
  fclose(fp);
}

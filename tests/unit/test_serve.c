/* serve/: the text rules of the engine (stop strings, UTF-8 held back until
 * complete) and the reasoning split of chat answers. The HTTP side is tested
 * end to end in tests/e2e/serve.sh. */
#include <string.h>

#include "check.h"
#include "serve/api.h"

static void add(keel_req *r, const char *s) {
  size_t n = strlen(s);
  r->text = keel_xrealloc(r->text, r->len + n + 1);
  memcpy(r->text + r->len, s, n + 1);
  r->len += n;
}

int main(void) {
  keel_req *r = keel_req_new();
  r->stop = keel_xcalloc(2, sizeof *r->stop);
  r->stop[r->n_stop++] = strdup("END");
  add(r, "hello E");
  CHECK(!keel_req_settle(r) && r->ready == 6); /* "E" may start END: held back */
  add(r, "x \xe2\x82");
  CHECK(!keel_req_settle(r) && r->ready == 9); /* "Ex " is final; the 2 bytes of a 3-byte character wait */
  add(r, "\xac and EN");
  CHECK(!keel_req_settle(r) && r->ready == 17); /* the euro sign is complete; "EN" waits */
  add(r, "D more");
  CHECK(keel_req_settle(r) && r->len == 17 && r->ready == 17 && !memcmp(r->text, "hello Ex \xe2\x82\xac and ", 17));
  free(r->text), r->text = NULL, r->len = r->ready = 0;
  add(r, "no stop here");
  CHECK(!keel_req_settle(r) && r->ready == r->len);
  free(r->stop[0]), free(r->stop), free(r->text), keel_ids_free(&r->prompt), free(r);

  size_t r0, rn, c0;
  const char *a = "<think>\nstep 1</think>\n\nThe answer.";
  keel_split_think(a, strlen(a), &r0, &rn, &c0);
  CHECK(rn == 7 && !memcmp(a + r0, "\nstep 1", 7) && !strcmp(a + c0, "The answer."));
  const char *b = "<think>still going";
  keel_split_think(b, strlen(b), &r0, &rn, &c0);
  CHECK(!strncmp(b + r0, "still going", rn) && rn == 11 && c0 == strlen(b));
  const char *c = "Just an answer.";
  keel_split_think(c, strlen(c), &r0, &rn, &c0);
  CHECK(rn == 0 && c0 == 0);
  return check_done("test_serve");
}

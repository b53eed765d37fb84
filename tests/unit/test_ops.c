/* Every backend op, forward and backward, against PyTorch autograd on small
 * shapes (tests/ref/ops_ref.py writes the fixture), for the fast and the
 * reference CPU kernels. Tolerance: max relative error 1e-4. */
#include <math.h>

#include "backend/backend.h"
#include "check.h"
#include "core/error.h"
#include "io/safetensors.h"

static keel_st_file fx;

static const float *F(const char *name, size_t *n) {
  const keel_st_tensor *t = keel_st_find(&fx, name);
  if (!t) {
    fprintf(stderr, "fixture lacks %s\n", name);
    exit(1);
  }
  if (n) *n = (size_t)keel_st_numel(t);
  return t->data;
}

static float *copy(const char *name, size_t *n) {
  size_t k;
  const float *src = F(name, &k);
  float *p = keel_xmalloc(k * sizeof *p);
  memcpy(p, src, k * sizeof *p);
  if (n) *n = k;
  return p;
}

static float *zeros(size_t n) { return keel_xcalloc(n, sizeof(float)); }

static void expect(const char *what, const float *got, const char *name, const char *be) {
  size_t n;
  const float *want = F(name, &n);
  double mx = 0, d = 0;
  for (size_t i = 0; i < n; i++) mx = fmax(mx, fabs(want[i])), d = fmax(d, fabs(got[i] - want[i]));
  CHECK_MSG(d / (mx + 1e-12) <= 1e-4, "%s %s: max relative error %.3g", be, what, d / (mx + 1e-12));
}

static void run(const keel_backend *be) {
  const char *nm = be->name;
  size_t n;
  { /* matmul 5x37 . 19x37^T */
    const float *x = F("matmul.x", NULL), *w = F("matmul.w", NULL), *d = F("matmul.dout", NULL);
    float *o = zeros(5 * 19), *dx = zeros(5 * 37), *dw = zeros(19 * 37);
    be->matmul(o, x, w, 5, 37, 19, 0);
    be->matmul_backward(dx, dw, d, x, w, 5, 37, 19);
    expect("matmul", o, "matmul.out", nm), expect("matmul dx", dx, "matmul.dx", nm), expect("matmul dw", dw, "matmul.dw", nm);
    free(o), free(dx), free(dw);
  }
  { /* rmsnorm 6x24 */
    const float *x = F("rmsnorm.x", NULL), *w = F("rmsnorm.w", NULL), *d = F("rmsnorm.dout", NULL);
    float *o = zeros(6 * 24), rstd[6], *dx = zeros(6 * 24), *dw = zeros(24);
    be->rmsnorm(o, rstd, x, w, 6, 24, 1e-6f);
    be->rmsnorm_backward(dx, dw, d, x, w, rstd, 6, 24);
    expect("rmsnorm", o, "rmsnorm.out", nm), expect("rmsnorm dx", dx, "rmsnorm.dx", nm);
    expect("rmsnorm dw", dw, "rmsnorm.dw", nm);
    free(o), free(dx), free(dw);
  }
  { /* rope: 5 rows x 3 vectors x 8 */
    const float *freqs = F("rope.freqs", NULL);
    const int32_t *pos = (const int32_t *)F("rope.pos", NULL);
    float cos_t[13 * 4], sin_t[13 * 4];
    for (int p = 0; p < 13; p++)
      for (int j = 0; j < 4; j++) cos_t[p * 4 + j] = (float)cos((double)p * freqs[j]), sin_t[p * 4 + j] = (float)sin((double)p * freqs[j]);
    int ipos[5];
    for (int i = 0; i < 5; i++) ipos[i] = pos[i];
    float *x = copy("rope.x", NULL), *d = copy("rope.dout", NULL);
    be->rope(x, ipos, cos_t, sin_t, 5, 3, 24, 8, 8, 0);
    be->rope(d, ipos, cos_t, sin_t, 5, 3, 24, 8, 8, 1);
    expect("rope", x, "rope.out", nm), expect("rope backward", d, "rope.dx", nm);
    free(x), free(d);
  }
  { /* attention B=2 T=6 H=3 dn=5 dr=4 dv=7 */
    int B = 2, T = 6, H = 3, dn = 5, dr = 4, dv = 7;
    const float *q = F("attention.q", NULL), *kv = F("attention.kv", NULL), *kpe = F("attention.kpe", NULL),
                *d = F("attention.dout", NULL);
    float *o = zeros((size_t)B * T * H * dv), *att = zeros((size_t)B * H * T * T);
    float *dq = zeros((size_t)B * T * H * (dn + dr)), *dkv = zeros((size_t)B * T * H * (dn + dv)), *dkpe = zeros((size_t)B * T * dr);
    be->attention(o, att, q, kv, kpe, B, T, H, dn, dr, dv, 0.37f);
    be->attention_backward(dq, dkv, dkpe, d, att, q, kv, kpe, B, T, H, dn, dr, dv, 0.37f);
    expect("attention", o, "attention.out", nm), expect("attention probabilities", att, "attention.att", nm);
    expect("attention dq", dq, "attention.dq", nm), expect("attention dkv", dkv, "attention.dkv", nm);
    expect("attention dkpe", dkpe, "attention.dkpe", nm);
    free(o), free(att), free(dq), free(dkv), free(dkpe);
  }
  { /* swiglu 4x33 */
    const float *g = F("swiglu.g", &n), *u = F("swiglu.u", NULL), *dh = F("swiglu.dh", NULL);
    float *h = zeros(n), *dg = zeros(n), *du = zeros(n);
    be->swiglu(h, g, u, 4, 33);
    be->swiglu_backward(dg, du, dh, g, u, 4, 33);
    expect("swiglu", h, "swiglu.h", nm), expect("swiglu dg", dg, "swiglu.dg", nm), expect("swiglu du", du, "swiglu.du", nm);
    free(h), free(dg), free(du);
  }
  { /* cross-entropy 5x50, one ignored row, scale 0.25 */
    float *l = copy("ce.logits", NULL), losses[5];
    be->cross_entropy(losses, l, (const int32_t *)F("ce.targets", NULL), 5, 50, 0.25f);
    expect("cross-entropy", losses, "ce.losses", nm), expect("cross-entropy gradient", l, "ce.dlogits", nm);
    free(l);
  }
  { /* AdamW step 3 */
    float *p = copy("adamw.p", &n), *m = copy("adamw.m", NULL), *v = copy("adamw.v", NULL);
    be->adamw(p, F("adamw.g", NULL), 1.0f, m, v, (long)n, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 3);
    expect("adamw p", p, "adamw.p2", nm), expect("adamw m", m, "adamw.m2", nm), expect("adamw v", v, "adamw.v2", nm);
    free(p), free(m), free(v);
  }
}

int main(void) {
  const char *root = getenv("KEEL_REF_FIXTURES");
  char path[512];
  snprintf(path, sizeof path, "%s/ops.safetensors", root && *root ? root : "tests/ref/fixtures");
  if (keel_st_open(&fx, path)) {
    fprintf(stderr, "%s\n", keel_errmsg());
    return 1;
  }
  run(keel_backend_cpu());
  run(keel_backend_cpu_reference());
  keel_st_close(&fx);
  return check_done("test_ops");
}

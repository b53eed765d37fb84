/* One decoder block, forward and backward: RMSNorm -> MLA (naive form) ->
 * residual -> RMSNorm -> dense SwiGLU or DeepSeekMoE -> residual.
 * Backward accumulates (+=) into the gradient buffers of m->g. */
#include <math.h>
#include <string.h>

#include "../core/clock.h"
#include "model.h"

/* Carves scratch arrays out of the model's workspace, in a fixed order: take() zeroed on all
 * threads, carve() as they are (written whole, or zeroed piece by piece just before use). */
typedef struct carver {
  float *p;
} carver;
static float *carve(carver *c, size_t n) {
  float *r = c->p;
  c->p += (n + 15) & ~(size_t)15;
  return r;
}
static float *take(carver *c, size_t n) {
  float *r = carve(c, n);
  keel_model_zero(r, n);
  return r;
}

/* ---- MLA ---- */

static void mla_forward(keel_model *m, const keel_layer_w *w, keel_layer_acts *A, float *out, int B, int T) {
  const keel_config *c = &m->c;
  const keel_backend *be = m->be;
  int N = B * T, d = c->hidden_size, H = c->num_attention_heads, dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim,
      dv = c->v_head_dim, dq = dn + dr, rq = c->q_lora_rank, rkv = c->kv_lora_rank;
  if (rq) {
    be->matmul(A->qa, A->ln1, w->wq_a, N, d, rq, 0);
    be->rmsnorm(A->qn, A->qn_rstd, A->qa, w->q_norm, N, rq, c->rms_norm_eps);
    be->matmul(A->q, A->qn, w->wq_b, N, rq, H * dq, 0);
  } else {
    be->matmul(A->q, A->ln1, w->wq, N, d, H * dq, 0);
  }
  be->rope(A->q + dn, m->pos, m->rope_cos, m->rope_sin, N, H, H * dq, dq, dr, 0);
  carver cv = {m->ws};
  float *kva = take(&cv, (size_t)N * (rkv + dr));
  be->matmul(kva, A->ln1, w->wkv_a, N, d, rkv + dr, 0);
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    memcpy(A->lat + (size_t)n * rkv, kva + (size_t)n * (rkv + dr), (size_t)rkv * sizeof(float));
    memcpy(A->kpe + (size_t)n * dr, kva + (size_t)n * (rkv + dr) + rkv, (size_t)dr * sizeof(float));
  }
  be->rmsnorm(A->ckv, A->ckv_rstd, A->lat, w->kv_norm, N, rkv, c->rms_norm_eps);
  be->rope(A->kpe, m->pos, m->rope_cos, m->rope_sin, N, 1, dr, 0, dr, 0);
  be->matmul(A->kvb, A->ckv, w->wkv_b, N, rkv, H * (dn + dv), 0);
  be->attention(A->o, A->att, A->q, A->kvb, A->kpe, B, T, H, dn, dr, dv, m->softmax_scale);
  be->matmul(out, A->o, w->wo, N, H * dv, d, 0);
}

/* dout (N, d): gradient of the attention output; da (N, d) += gradient of its input. */
static void mla_backward(keel_model *m, const keel_layer_w *w, keel_layer_w *g, keel_layer_acts *A, const float *dout,
                         float *da, int B, int T, carver *cv) {
  const keel_config *c = &m->c;
  const keel_backend *be = m->be;
  int N = B * T, d = c->hidden_size, H = c->num_attention_heads, dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim,
      dv = c->v_head_dim, dq = dn + dr, rq = c->q_lora_rank, rkv = c->kv_lora_rank;
  float *d_o = take(cv, (size_t)N * H * dv), *dq_ = take(cv, (size_t)N * H * dq),
        *dkvb = take(cv, (size_t)N * H * (dn + dv)), *dkpe = take(cv, (size_t)N * dr),
        *dckv = take(cv, (size_t)N * rkv), *dlat = take(cv, (size_t)N * rkv), *dkva = take(cv, (size_t)N * (rkv + dr));
  be->matmul_backward(d_o, g->wo, dout, A->o, w->wo, N, H * dv, d);
  be->attention_backward(dq_, dkvb, dkpe, d_o, A->att, A->q, A->kvb, A->kpe, B, T, H, dn, dr, dv, m->softmax_scale);
  be->matmul_backward(dckv, g->wkv_b, dkvb, A->ckv, w->wkv_b, N, rkv, H * (dn + dv));
  be->rmsnorm_backward(dlat, g->kv_norm, dckv, A->lat, w->kv_norm, A->ckv_rstd, N, rkv);
  be->rope(dkpe, m->pos, m->rope_cos, m->rope_sin, N, 1, dr, 0, dr, 1);
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    memcpy(dkva + (size_t)n * (rkv + dr), dlat + (size_t)n * rkv, (size_t)rkv * sizeof(float));
    memcpy(dkva + (size_t)n * (rkv + dr) + rkv, dkpe + (size_t)n * dr, (size_t)dr * sizeof(float));
  }
  /* kva was the projection of ln1; recompute nothing: wkv_a's input is ln1 */
  be->matmul_backward(da, g->wkv_a, dkva, A->ln1, w->wkv_a, N, d, rkv + dr);
  be->rope(dq_ + dn, m->pos, m->rope_cos, m->rope_sin, N, H, H * dq, dq, dr, 1);
  if (rq) {
    float *dqn = take(cv, (size_t)N * rq), *dqa = take(cv, (size_t)N * rq);
    be->matmul_backward(dqn, g->wq_b, dq_, A->qn, w->wq_b, N, rq, H * dq);
    be->rmsnorm_backward(dqa, g->q_norm, dqn, A->qa, w->q_norm, A->qn_rstd, N, rq);
    be->matmul_backward(da, g->wq_a, dqa, A->ln1, w->wq_a, N, d, rq);
  } else {
    be->matmul_backward(da, g->wq, dq_, A->ln1, w->wq, N, d, H * dq);
  }
}

/* ---- feed-forward: dense SwiGLU or MoE ---- */

/* The experts by number of rows, most first (ties by index): the order the threads take them
 * in, so that the last ones handed out are small and no thread waits long on another. */
static void by_load(int *ord, const int *offs, int E) {
  for (int e = 0; e < E; e++) {
    int k = e, n = offs[e + 1] - offs[e];
    for (; k > 0 && offs[ord[k - 1] + 1] - offs[ord[k - 1]] < n; k--) ord[k] = ord[k - 1];
    ord[k] = e;
  }
}

static void swiglu_ffn(keel_model *m, float *y, const float *u, const float *wg, const float *wu, const float *wd,
                       float *fg, float *fu, float *fh, int N, int I, int accumulate) {
  int d = m->c.hidden_size;
  m->be->matmul(fg, u, wg, N, d, I, 0);
  m->be->matmul(fu, u, wu, N, d, I, 0);
  m->be->swiglu(fh, fg, fu, N, I);
  m->be->matmul(y, fh, wd, N, I, d, accumulate);
}

/* dfh, dfg, dfu: (N, I) scratch each, zeroed (take() zeroes what it carves) */
static void swiglu_ffn_backward(keel_model *m, float *du, const float *dy, const float *u, const float *wg,
                                const float *wu, const float *wd, float *gwg, float *gwu, float *gwd, const float *fg,
                                const float *fu, const float *fh, int N, int I, float *dfh, float *dfg, float *dfu) {
  int d = m->c.hidden_size;
  m->be->matmul_backward(dfh, gwd, dy, fh, wd, N, I, d);
  m->be->swiglu_backward(dfg, dfu, dfh, fg, fu, N, I);
  m->be->matmul_backward(du, gwg, dfg, u, wg, N, d, I);
  m->be->matmul_backward(du, gwu, dfu, u, wu, N, d, I);
}

void keel_moe_route(const keel_config *c, const float *layer_bias, const float *logits, float *scores, int *sels,
                    float *gws, int N) {
  int E = c->n_routed_experts, K = c->num_experts_per_tok, G = c->n_group, TG = c->topk_group, per = E / G;
  const float *bias = c->topk_method == KEEL_TOPK_NOAUX_TC ? layer_bias : NULL;
  /* tokens in parallel (serial, it had left a training step's other thread idle 6 ms) */
#pragma omp parallel for schedule(static) if (N >= 64)
  for (int n = 0; n < N; n++) {
    float sel_score[E], gscore[G];
    const float *l = logits + (size_t)n * E;
    float *s = scores + (size_t)n * E;
    if (c->scoring_func == KEEL_SCORE_SIGMOID) {
      for (int e = 0; e < E; e++) s[e] = 1.0f / (1.0f + expf(-l[e]));
    } else {
      float mx = -INFINITY, sum = 0;
      for (int e = 0; e < E; e++) mx = l[e] > mx ? l[e] : mx;
      for (int e = 0; e < E; e++) sum += s[e] = expf(l[e] - mx);
      for (int e = 0; e < E; e++) s[e] /= sum;
    }
    for (int e = 0; e < E; e++) sel_score[e] = s[e] + (bias ? bias[e] : 0.0f);
    if (G > 1 && TG < G) {
      for (int gi = 0; gi < G; gi++) { /* noaux_tc: sum of the 2 largest; otherwise the max */
        float a = -INFINITY, b = -INFINITY;
        for (int e = gi * per; e < (gi + 1) * per; e++) {
          float v = sel_score[e];
          if (v > a) b = a, a = v;
          else if (v > b) b = v;
        }
        gscore[gi] = c->topk_method == KEEL_TOPK_NOAUX_TC ? a + b : a;
      }
      for (int keep = 0; keep < G - TG; keep++) { /* drop the G-TG weakest groups (ties: the higher index) */
        int worst = -1;
        for (int gi = 0; gi < G; gi++)
          if (gscore[gi] != INFINITY && (worst < 0 || gscore[gi] <= gscore[worst])) worst = gi;
        for (int e = worst * per; e < (worst + 1) * per; e++) sel_score[e] = -INFINITY;
        gscore[worst] = INFINITY; /* marks dropped */
      }
    }
    int *sel = sels + (size_t)n * K;
    for (int k = 0; k < K; k++) { /* top-K, ties to the lower index */
      int best = -1;
      for (int e = 0; e < E; e++) {
        int taken = 0;
        for (int q = 0; q < k; q++) taken |= sel[q] == e;
        if (!taken && (best < 0 || sel_score[e] > sel_score[best])) best = e;
      }
      sel[k] = best;
    }
    float *gw = gws + (size_t)n * K, sum = 0;
    for (int k = 0; k < K; k++) sum += gw[k] = s[sel[k]];
    int norm = c->norm_topk_prob && K > 1;
    for (int k = 0; k < K; k++) gw[k] = (norm ? gw[k] / (sum + 1e-20f) : gw[k]) * c->routed_scaling_factor;
  }
}

static void moe_forward(keel_model *m, int layer, const keel_layer_w *w, keel_layer_acts *A, float *y, int B, int T,
                        int train) {
  const keel_config *c = &m->c;
  const keel_backend *be = m->be;
  int N = B * T, d = c->hidden_size, E = c->n_routed_experts, K = c->num_experts_per_tok,
      Ie = c->moe_intermediate_size, S = c->n_shared_experts;
  be->matmul(A->logits, A->ln2, w->gate, N, d, E, 0);
  keel_moe_route(c, m->bias + (size_t)layer * E, A->logits, A->scores, A->sel, A->gw, N);
  /* sort assignments by expert (stable), gather inputs */
  int *offs = A->offs;
  memset(offs, 0, (size_t)(E + 1) * sizeof *offs);
  for (int a = 0; a < N * K; a++) offs[A->sel[a] + 1]++;
  for (int e = 0; e < E; e++) offs[e + 1] += offs[e];
  int fill[E];
  memcpy(fill, offs, (size_t)E * sizeof *fill);
  for (int a = 0; a < N * K; a++) {
    int r = fill[A->sel[a]]++;
    A->order[r] = a;
    A->slot[a] = r;
  }
  /* the loops over tokens below write disjoint rows: parallel, each row's sum in a fixed order */
#pragma omp parallel for schedule(static)
  for (int a = 0; a < N * K; a++)
    memcpy(A->ein + (size_t)A->slot[a] * d, A->ln2 + (size_t)(a / K) * d, (size_t)d * sizeof(float));
  for (int e = 0; e < E && train == 1; e++) m->load[(size_t)layer * E + e] += (float)(offs[e + 1] - offs[e]);
  /* experts in parallel, each expert's GEMMs on one thread (the grouped GEMMs; sums keep their
   * order), the largest first: the shared experts (all N rows, into so), then the routed ones by
   * load. The shared experts had run after them on both threads, GEMMs of few columns cut into
   * units a thread each, at 77% of the peak against the routed ones' 82%. */
  float *so = m->ws; /* (N, d), free in the forward */
  int ord[E];
  by_load(ord, offs, E);
#pragma omp parallel for schedule(dynamic)
  for (int i = -(S > 0); i < E; i++) {
    if (i < 0) {
      swiglu_ffn(m, so, A->ln2, w->s_gate, w->s_up, w->s_down, A->sg, A->su, A->sh, N, S * Ie, 0);
      continue;
    }
    int e = ord[i], r0 = offs[e], cnt = offs[e + 1] - offs[e];
    if (!cnt) continue;
    swiglu_ffn(m, A->eo + (size_t)r0 * d, A->ein + (size_t)r0 * d, w->e_gate + (size_t)e * Ie * d,
               w->e_up + (size_t)e * Ie * d, w->e_down + (size_t)e * d * Ie, A->eg + (size_t)r0 * Ie,
               A->eu + (size_t)r0 * Ie, A->eh + (size_t)r0 * Ie, cnt, Ie, 0);
  }
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    float *yr = y + (size_t)n * d;
    memset(yr, 0, (size_t)d * sizeof *yr);
    for (int k = 0; k < K; k++) {
      const float *eo = A->eo + (size_t)A->slot[n * K + k] * d;
      float gk = A->gw[n * K + k];
      for (int i = 0; i < d; i++) yr[i] += gk * eo[i];
    }
    if (S) /* the shared experts last, as when their GEMM added into y */
      for (int i = 0; i < d; i++) yr[i] += so[(size_t)n * d + i];
  }
  /* sequence-wise balance loss: alpha * mean_b sum_i f_i P_i */
  if (train && m->balance_alpha > 0) {
    double total = 0;
    for (int b = 0; b < B; b++) {
      float *f = A->fbal + (size_t)b * E;
      double P[E];
      memset(f, 0, (size_t)E * sizeof *f);
      memset(P, 0, sizeof P);
      for (int t = 0; t < T; t++) {
        int n = b * T + t;
        for (int k = 0; k < K; k++) f[A->sel[n * K + k]] += (float)E / ((float)K * T);
        const float *s = A->scores + (size_t)n * E;
        double sum = 0;
        for (int e = 0; e < E; e++) sum += s[e];
        for (int e = 0; e < E; e++) P[e] += s[e] / sum / T;
      }
      for (int e = 0; e < E; e++) total += f[e] * P[e];
    }
    if (train == 1) m->bal_loss += m->balance_alpha * total / B;
  }
}

static void moe_backward(keel_model *m, const keel_layer_w *w, keel_layer_w *g, keel_layer_acts *A, const float *dy,
                         float *du, int B, int T, carver *cv) {
  const keel_config *c = &m->c;
  const keel_backend *be = m->be;
  int N = B * T, d = c->hidden_size, E = c->n_routed_experts, K = c->num_experts_per_tok,
      Ie = c->moe_intermediate_size, S = c->n_shared_experts;
  size_t ns = (size_t)N * S * Ie; /* the shared experts' scratch, zeroed (none without them) */
  float *ssh = take(cv, ns), *ssg = take(cv, ns), *ssu = take(cv, ns);
  /* deo and dgw are written whole; dein and the experts' SwiGLU gradients below are zeroed an
   * expert's rows at a time by the thread that runs it, just before, so that they are in its
   * cache when its GEMMs add into them (zeroed all at once, 41 MB, they had gone back to memory
   * and been read from it again) */
  float *deo = carve(cv, (size_t)N * K * d), *dgw = carve(cv, (size_t)N * K), *dein = carve(cv, (size_t)N * K * d);
#pragma omp parallel for schedule(static)
  for (int a = 0; a < N * K; a++) {
    int r = A->slot[a], n = a / K;
    const float *dyr = dy + (size_t)n * d, *eo = A->eo + (size_t)r * d;
    float *dr = deo + (size_t)r * d, gk = A->gw[a], s = 0;
#pragma omp simd reduction(+ : s) /* in vector lanes (one chain of adds: 0.35% of a bench-b step, now 0.24%) */
    for (int i = 0; i < d; i++) {
      dr[i] = gk * dyr[i];
      s += dyr[i] * eo[i];
    }
    dgw[a] = s;
  }
  /* experts in parallel, each on one thread with its own rows of the scratch: the grouped GEMMs,
   * the shared experts first (into du, which the routed experts' rows are added to after) */
  size_t ne = (size_t)N * K * Ie;
  float *sfh = carve(cv, ne), *sfg = carve(cv, ne), *sfu = carve(cv, ne);
  int ord[E];
  by_load(ord, A->offs, E);
#pragma omp parallel for schedule(dynamic)
  for (int i = -(S > 0); i < E; i++) {
    if (i < 0) {
      swiglu_ffn_backward(m, du, dy, A->ln2, w->s_gate, w->s_up, w->s_down, g->s_gate, g->s_up, g->s_down, A->sg,
                          A->su, A->sh, N, S * Ie, ssh, ssg, ssu);
      continue;
    }
    int e = ord[i], r0 = A->offs[e], cnt = A->offs[e + 1] - r0;
    if (!cnt) continue;
    size_t o = (size_t)r0 * Ie, ni = (size_t)cnt * Ie * sizeof(float);
    memset(dein + (size_t)r0 * d, 0, (size_t)cnt * d * sizeof(float));
    memset(sfh + o, 0, ni), memset(sfg + o, 0, ni), memset(sfu + o, 0, ni);
    swiglu_ffn_backward(m, dein + (size_t)r0 * d, deo + (size_t)r0 * d, A->ein + (size_t)r0 * d,
                        w->e_gate + (size_t)e * Ie * d, w->e_up + (size_t)e * Ie * d, w->e_down + (size_t)e * d * Ie,
                        g->e_gate + (size_t)e * Ie * d, g->e_up + (size_t)e * Ie * d, g->e_down + (size_t)e * d * Ie,
                        A->eg + o, A->eu + o, A->eh + o, cnt, Ie, sfh + o, sfg + o, sfu + o);
  }
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) /* each token's K rows, added in k order */
    for (int k = 0; k < K; k++) {
      const float *src = dein + (size_t)A->slot[n * K + k] * d;
      float *dst = du + (size_t)n * d;
      for (int i = 0; i < d; i++) dst[i] += src[i];
    }
  /* router: weights -> scores (+ balance loss) -> logits */
  float *ds = take(cv, (size_t)N * E);
  int norm = c->norm_topk_prob && K > 1;
  float rs = c->routed_scaling_factor;
  for (int n = 0; n < N; n++) {
    const float *s = A->scores + (size_t)n * E;
    const int *sel = A->sel + (size_t)n * K;
    const float *dg = dgw + (size_t)n * K;
    float *dsr = ds + (size_t)n * E;
    if (norm) {
      float sum = 0, dot = 0;
      for (int k = 0; k < K; k++) sum += s[sel[k]], dot += dg[k] * s[sel[k]];
      sum += 1e-20f;
      for (int k = 0; k < K; k++) dsr[sel[k]] += rs * (dg[k] / sum - dot / (sum * sum));
    } else {
      for (int k = 0; k < K; k++) dsr[sel[k]] += rs * dg[k];
    }
    if (m->balance_alpha > 0) { /* d/ds of alpha/B * sum_i f_i * (1/T) * s_i / sum_j s_j */
      int b = n / T;
      const float *f = A->fbal + (size_t)b * E;
      double sum = 0, dot = 0;
      for (int e = 0; e < E; e++) sum += s[e];
      float coef = m->balance_alpha / ((float)B * T);
      for (int e = 0; e < E; e++) dot += coef * f[e] * s[e] / sum;
      for (int e = 0; e < E; e++) dsr[e] += (float)((coef * f[e] - dot) / sum);
    }
  }
  float *dl = take(cv, (size_t)N * E);
  for (int n = 0; n < N; n++) {
    const float *s = A->scores + (size_t)n * E, *dsr = ds + (size_t)n * E;
    float *dlr = dl + (size_t)n * E;
    if (c->scoring_func == KEEL_SCORE_SIGMOID) {
      for (int e = 0; e < E; e++) dlr[e] = dsr[e] * s[e] * (1 - s[e]);
    } else {
      float dot = 0;
      for (int e = 0; e < E; e++) dot += s[e] * dsr[e];
      for (int e = 0; e < E; e++) dlr[e] = s[e] * (dsr[e] - dot);
    }
  }
  be->matmul_backward(du, g->gate, dl, A->ln2, w->gate, N, d, E);
}

/* ---- the block ---- */

void keel_block_forward(keel_model *m, int layer, keel_layer_acts *A, const float *x, int B, int T, int train) {
  const keel_config *c = &m->c;
  const keel_layer_w *w = &m->w.layers[layer];
  int N = B * T, d = c->hidden_size;
  A->x = (float *)x;
  m->be->rmsnorm(A->ln1, A->ln1_rstd, x, w->ln1, N, d, c->rms_norm_eps);
  double t0 = keel_now();
  mla_forward(m, w, A, A->x2, B, T);
  double t1 = keel_now();
  m->phase_s[KEEL_PHASE_ATTENTION] += t1 - t0;
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < (size_t)N * d; i++) A->x2[i] += x[i];
  m->be->rmsnorm(A->ln2, A->ln2_rstd, A->x2, w->ln2, N, d, c->rms_norm_eps);
  t1 = keel_now();
  keel_ffn_forward(m, layer, A, B, T, train);
  m->phase_s[KEEL_PHASE_FFN] += keel_now() - t1;
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < (size_t)N * d; i++) A->out[i] += A->x2[i];
}

void keel_ffn_forward(keel_model *m, int layer, keel_layer_acts *A, int B, int T, int train) {
  const keel_layer_w *w = &m->w.layers[layer];
  if (w->moe)
    moe_forward(m, layer, w, A, A->out, B, T, train);
  else
    swiglu_ffn(m, A->out, A->ln2, w->w_gate, w->w_up, w->w_down, A->fg, A->fu, A->fh, B * T,
               m->c.intermediate_size, 0);
}

void keel_block_backward(keel_model *m, int layer, keel_layer_acts *A, const float *dout, float *dx, int B, int T) {
  const keel_config *c = &m->c;
  const keel_layer_w *w = &m->w.layers[layer];
  keel_layer_w *g = &m->g.layers[layer];
  int N = B * T, d = c->hidden_size;
  carver cv = {m->ws};
  float *du = take(&cv, (size_t)N * d), *da = take(&cv, (size_t)N * d);
  keel_model_copy(dx, dout, (size_t)N * d); /* the residual; dx then gathers each branch's gradient */
  double t0 = keel_now();
  if (w->moe)
    moe_backward(m, w, g, A, dout, du, B, T, &cv);
  else
    swiglu_ffn_backward(m, du, dout, A->ln2, w->w_gate, w->w_up, w->w_down, g->w_gate, g->w_up, g->w_down, A->fg,
                        A->fu, A->fh, N, c->intermediate_size, take(&cv, (size_t)N * c->intermediate_size),
                        take(&cv, (size_t)N * c->intermediate_size), take(&cv, (size_t)N * c->intermediate_size));
  double t1 = keel_now();
  m->phase_s[KEEL_PHASE_FFN] += t1 - t0;
  m->be->rmsnorm_backward(dx, g->ln2, du, A->x2, w->ln2, A->ln2_rstd, N, d);
  t1 = keel_now();
  mla_backward(m, w, g, A, dx, da, B, T, &cv); /* dx is now the attention output's gradient */
  m->phase_s[KEEL_PHASE_ATTENTION] += keel_now() - t1;
  m->be->rmsnorm_backward(dx, g->ln1, da, A->x, w->ln1, A->ln1_rstd, N, d);
}

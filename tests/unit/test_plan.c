/* plan/: the reliability formulas against the numbers their papers print
 * (spec clusters.md C1 and C3). */
#include <math.h>

#include "check.h"
#include "plan/reliability.h"

static int near(double a, double b, double tol) { return fabs(a - b) <= tol; }

int main(void) {
  /* Daly's own test points: restart 10 min, checkpoint 5 min; MTBF 24 h, 6 h, 15 min -> 116.7, 56.7, 9.1 min */
  double d = 5 * 60;
  CHECK_MSG(near(keel_daly_interval(d, 24 * 3600) / 60, 116.7, 0.05), "%.2f", keel_daly_interval(d, 24 * 3600) / 60);
  CHECK_MSG(near(keel_daly_interval(d, 6 * 3600) / 60, 56.7, 0.05), "%.2f", keel_daly_interval(d, 6 * 3600) / 60);
  CHECK_MSG(near(keel_daly_interval(d, 15 * 60) / 60, 9.1, 0.05), "%.2f", keel_daly_interval(d, 15 * 60) / 60);
  CHECK(keel_daly_interval(3600, 1200) == 1200); /* delta >= 2M: the MTBF itself */
  /* Young at the Llama-3 MTBF (11,135 s): 5 s -> 5.6 min, 20 s -> 11.1, 60 s -> 19.3, 300 s -> 43 */
  static const double cost[4] = {5, 20, 60, 300}, minutes[4] = {5.6, 11.1, 19.3, 43};
  for (int i = 0; i < 4; i++) {
    double t = keel_young_interval(cost[i], 11135) / 60;
    CHECK_MSG(near(t, minutes[i], minutes[i] < 40 ? 0.05 : 0.5), "Young %.0f s: %.2f min", cost[i], t);
  }
  /* Llama 3: 419 unexpected interruptions in 54 days on 16,384 GPUs (2,048 nodes): MTBF 3.09 h,
   * 3.79e-3 per node-day */
  double rate = 419.0 / 54 / 2048;
  CHECK_MSG(near(rate, 3.79e-3, 0.005e-3), "%.4g", rate);
  CHECK_MSG(near(keel_mtbf_s(rate, 2048) / 3600, 3.09, 0.005), "%.3f", keel_mtbf_s(rate, 2048) / 3600);
  /* Meta's node-series model: 6.5e-3 per node-day -> 1.80 h at 16,384 GPUs, 0.225 h at 131,072 */
  CHECK_MSG(near(keel_mtbf_s(6.5e-3, 16384 / 8) / 3600, 1.80, 0.005), "%.3f", keel_mtbf_s(6.5e-3, 2048) / 3600);
  CHECK_MSG(near(keel_mtbf_s(6.5e-3, 131072 / 8) / 3600, 0.225, 0.001), "%.4f", keel_mtbf_s(6.5e-3, 16384) / 3600);
  CHECK(isinf(keel_mtbf_s(0, 100)));
  /* goodput: no failures leaves only the checkpoint cost; failures cost more, and Daly's interval
   * beats intervals on either side of it */
  CHECK(near(keel_goodput(3600, 60, 600, INFINITY), 3600.0 / 3660, 1e-12));
  double M = 6 * 3600, best = keel_daly_interval(d, M), g = keel_goodput(best, d, 600, M);
  CHECK(g > keel_goodput(best / 3, d, 600, M) && g > keel_goodput(best * 3, d, 600, M));
  CHECK_MSG(near(g, 1 - sqrt(2 * d / M), 0.03), "goodput %.3f vs 1 - sqrt(2 delta / M) %.3f", g, 1 - sqrt(2 * d / M));
  /* Meta's ETTR: 1,024 nodes failing 2.34 per 1,000 node-days, 10 min restart, 5 min non-blocking
   * checkpoints: about 0.98 */
  double e = keel_ettr_meta(1024, 2.34e-3 / 86400, 600, 300, 0);
  CHECK_MSG(e > 0.97 && e < 0.99, "ETTR %.4f", e);
  CHECK(keel_ettr_meta(1024, 2.34e-3 / 86400, 600, 300, 30) < e); /* blocking writes cost */
  return check_done("test_plan");
}

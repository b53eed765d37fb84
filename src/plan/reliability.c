/* Reliability formulas; each is tested against the published numbers in test_plan. */
#include "reliability.h"

#include <math.h>

double keel_mtbf_s(double rate_per_unit_day, double units) {
  double rate = rate_per_unit_day * units; /* failures per day */
  return rate > 0 ? 86400.0 / rate : INFINITY;
}

double keel_young_interval(double delta, double mtbf) { return sqrt(2.0 * delta * mtbf); }

double keel_daly_interval(double delta, double mtbf) {
  if (delta >= 2.0 * mtbf) return mtbf;
  double x = delta / (2.0 * mtbf);
  return sqrt(2.0 * delta * mtbf) * (1.0 + sqrt(x) / 3.0 + x / 9.0) - delta;
}

double keel_daly_wallclock(double work, double tau, double delta, double restart, double mtbf) {
  if (!isfinite(mtbf)) return work * (tau + delta) / tau;
  return mtbf * exp(restart / mtbf) * (exp((tau + delta) / mtbf) - 1.0) * work / tau;
}

double keel_goodput(double tau, double delta, double restart, double mtbf) {
  return 1.0 / keel_daly_wallclock(1.0, tau, delta, restart, mtbf);
}

double keel_ettr_meta(double units, double rate_per_unit_s, double restart, double interval, double blocking) {
  double lost = units * rate_per_unit_s * (restart + interval / 2.0);
  return (1.0 - lost) / (1.0 + blocking / interval);
}

/* The reliability core of keel plan (spec clusters.md C1, C3): how often a
 * run of N chips is interrupted, the checkpoint interval that loses least
 * (Young, Daly), and the share of wall-clock time that trains (goodput).
 * Times are in seconds unless a name says otherwise. */
#ifndef KEEL_PLAN_RELIABILITY_H
#define KEEL_PLAN_RELIABILITY_H

/* MTBF of a job on `units` nodes or chips that each fail `rate_per_unit_day` times a day
 * (independent failures: the rates add). */
double keel_mtbf_s(double rate_per_unit_day, double units);
/* Young (1974): tau = sqrt(2 delta M) for checkpoint cost delta and MTBF M. */
double keel_young_interval(double delta, double mtbf);
/* Daly (2006), higher order: sqrt(2 delta M) [1 + sqrt(delta/2M)/3 + (delta/2M)/9] - delta
 * for delta < 2M, else M. */
double keel_daly_interval(double delta, double mtbf);
/* Daly's expected wall-clock to finish `work` seconds of computation with checkpoints every
 * tau seconds of work costing delta each, restart cost R, exponential failures with MTBF M. */
double keel_daly_wallclock(double work, double tau, double delta, double restart, double mtbf);
/* Share of wall-clock that is useful work under that model: work / wall-clock. */
double keel_goodput(double tau, double delta, double restart, double mtbf);
/* Meta's expected effective-training-time ratio (Kokolis et al., HPCA'25):
 * (1 - N r u0 - N r dt/2) / (1 + w/dt), N units failing r per second each, restart u0,
 * checkpoint every dt costing w of blocking time. */
double keel_ettr_meta(double units, double rate_per_unit_s, double restart, double interval, double blocking);

#endif

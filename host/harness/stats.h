/*
** harness/stats.h: the statistics of `speedrun score` (docs/harness.md): the regularized incomplete
** beta function, Student's t distribution, the one-sided one-sample t-test of the speedrun rule
** (mean validation loss below the target with p < 0.01) and the fraction of speed-up recovered.
*/
#ifndef SR_HSTATS_H
#define SR_HSTATS_H

/* I_x(a, b) for a, b > 0 and 0 <= x <= 1 (continued fraction, Lentz); NAN on bad arguments */
double sr_betainc(double a, double b, double x);
/* P(T <= t) for Student's t with df > 0 degrees of freedom */
double sr_t_cdf(double t, double df);

typedef struct sr_ttest {
  int n;
  double mean, std;    /* std: sample standard deviation (n - 1) */
  double t, p;         /* H1: mean < target; p = P(T_{n-1} <= t); NAN when n < 2 or std = 0 */
} sr_ttest;
sr_ttest sr_ttest_less(const double *x, int n, double target);

/* (t_i - t) / (t_i - t_next); NAN when t_i <= t_next */
double sr_fsr(double t_i, double t_next, double t);

#endif

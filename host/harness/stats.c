/*
** harness/stats.c: statistics for scoring (host/harness/stats.h): the regularised incomplete beta
** function, Student's t distribution, the one-sided t-test and FSR. Bound to Lua as speedrun.stats
** by host/lua/lstats.c.
*/
#include <math.h>     /* defines: lgamma, exp, log, sqrt, NAN */

#include "harness/stats.h"

/* continued fraction of I_x(a, b) (Numerical Recipes' betacf, modified Lentz) */
static double betacf(double a, double b, double x) {
  const double tiny = 1e-300, eps = 1e-15;
  double qab = a + b, qap = a + 1, qam = a - 1;
  double c = 1, d = 1 - qab * x / qap;
  if (fabs(d) < tiny) d = tiny;
  d = 1 / d;
  double h = d;
  for (int m = 1; m <= 10000; m++) {
    int m2 = 2 * m;
    double aa = m * (b - m) * x / ((qam + m2) * (a + m2));
    d = 1 + aa * d;
    if (fabs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (fabs(c) < tiny) c = tiny;
    d = 1 / d;
    h *= d * c;
    aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
    d = 1 + aa * d;
    if (fabs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (fabs(c) < tiny) c = tiny;
    d = 1 / d;
    double del = d * c;
    h *= del;
    if (fabs(del - 1) < eps) break;
  }
  return h;
}

double sr_betainc(double a, double b, double x) {
  if (!(a > 0) || !(b > 0) || !(x >= 0) || !(x <= 1)) return NAN;
  if (x == 0) return 0;
  if (x == 1) return 1;
  double lbt = lgamma(a + b) - lgamma(a) - lgamma(b) + a * log(x) + b * log1p(-x);
  /* the fraction converges fast for x < (a + 1) / (a + b + 2); use the symmetry otherwise */
  if (x < (a + 1) / (a + b + 2)) return exp(lbt) * betacf(a, b, x) / a;
  return 1 - exp(lbt) * betacf(b, a, 1 - x) / b;
}

double sr_t_cdf(double t, double df) {
  if (!(df > 0) || isnan(t)) return NAN;
  if (isinf(t)) return t > 0 ? 1 : 0;
  double x = df / (df + t * t);
  double tail = 0.5 * sr_betainc(df / 2, 0.5, x);   /* P(T > |t|) */
  return t > 0 ? 1 - tail : tail;
}

sr_ttest sr_ttest_less(const double *x, int n, double target) {
  sr_ttest r = {n, NAN, NAN, NAN, NAN};
  if (n < 1) return r;
  double s = 0;
  for (int i = 0; i < n; i++) s += x[i];
  r.mean = s / n;
  if (n < 2) return r;
  double ss = 0;
  for (int i = 0; i < n; i++) ss += (x[i] - r.mean) * (x[i] - r.mean);
  r.std = sqrt(ss / (n - 1));
  if (r.std > 0) {
    r.t = (r.mean - target) / (r.std / sqrt((double)n));
    r.p = sr_t_cdf(r.t, n - 1);
  } else {
    r.t = r.mean < target ? -INFINITY : r.mean > target ? INFINITY : NAN;
    r.p = r.mean < target ? 0 : r.mean > target ? 1 : NAN;
  }
  return r;
}

double sr_fsr(double t_i, double t_next, double t) {
  if (!(t_i > t_next)) return NAN;
  return (t_i - t) / (t_i - t_next);
}

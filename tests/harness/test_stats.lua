-- speedrun.stats: the incomplete beta, Student's t CDF, the one-sided t-test and FSR against
-- values computed by hand (closed forms for 1 and 2 degrees of freedom, binomial sums, tables).
local T = require "speedrun.testing"
local stats = require "speedrun.stats"

T.case("regularized incomplete beta", function()
  T.close(stats.betainc(1, 1, 0.3), 0.3, 1e-12)
  -- I_x(2, 3) = sum_{j=2..4} C(4, j) x^j (1-x)^(4-j); at x = 0.4: 0.3456 + 0.1536 + 0.0256
  T.close(stats.betainc(2, 3, 0.4), 0.5248, 1e-12)
  -- I_x(a, 1) = x^a
  T.close(stats.betainc(3.5, 1, 0.7), 0.7 ^ 3.5, 1e-12)
  -- symmetry I_x(a, b) = 1 - I_{1-x}(b, a)
  T.close(stats.betainc(5, 2.5, 0.8), 1 - stats.betainc(2.5, 5, 0.2), 1e-12)
  T.eq(stats.betainc(2, 3, 0), 0)
  T.eq(stats.betainc(2, 3, 1), 1)
  T.ok(stats.betainc(-1, 3, 0.5) ~= stats.betainc(-1, 3, 0.5), "NaN for a bad argument")
end)

T.case("t distribution CDF", function()
  -- df = 1 (Cauchy): 1/2 + atan(t)/pi
  for _, t in ipairs {-3, -1, 0, 0.5, 1, 2, 10} do
    T.close(stats.t_cdf(t, 1), 0.5 + math.atan(t) / math.pi, 1e-12)
  end
  -- df = 2: 1/2 + t / (2 sqrt(t^2 + 2))
  for _, t in ipairs {-4, -1.92154, -0.3, 0, 1, 2.5} do
    T.close(stats.t_cdf(t, 2), 0.5 + t / (2 * math.sqrt(t * t + 2)), 1e-12)
  end
  -- one-sided 99% points from the t table
  T.close(stats.t_cdf(3.746947, 4), 0.99, 1e-6)
  T.close(stats.t_cdf(2.763769, 10), 0.99, 1e-6)
  T.close(stats.t_cdf(-6.964557, 2), 0.01, 1e-6)
  -- large df approaches the normal: Phi(1.959964) = 0.975
  T.close(stats.t_cdf(1.959964, 1e7), 0.975, 1e-6)
end)

T.case("one-sided t-test: mean below target", function()
  -- {3.20, 3.25, 3.27} vs 3.28: mean 3.24, s = sqrt(0.0013), t = -0.04 / (s / sqrt 3), df 2
  local r = stats.ttest_less({3.20, 3.25, 3.27}, 3.28)
  local s = math.sqrt(0.0013)
  local t = -0.04 / (s / math.sqrt(3))
  T.eq(r.n, 3)
  T.close(r.mean, 3.24, 1e-12)
  T.close(r.std, s, 1e-12)
  T.close(r.t, t, 1e-9)
  T.close(r.p, 0.5 + t / (2 * math.sqrt(t * t + 2)), 1e-9)
  T.close(r.t, -1.92154, 1e-5)
  T.close(r.p, 0.0973, 1e-4)
  -- one value: a mean, no test
  local one = stats.ttest_less({3.1}, 3.28)
  T.close(one.mean, 3.1, 1e-12)
  T.ok(one.p == nil and one.std == nil, "no p with one run")
  -- zero spread: certain
  T.eq(stats.ttest_less({3.0, 3.0}, 3.28).p, 0)
  T.eq(stats.ttest_less({3.5, 3.5}, 3.28).p, 1)
end)

T.case("fraction of speed-up recovered", function()
  T.close(stats.fsr(100, 80, 90), 0.5, 1e-12)
  T.close(stats.fsr(2968.3, 2210.0, 2210.0), 1.0, 1e-12)
  T.close(stats.fsr(100, 80, 100), 0.0, 1e-12)
  T.close(stats.fsr(100, 80, 110), -0.5, 1e-12)
  T.eq(stats.fsr(80, 100, 90), nil, "no FSR when the target record is not faster")
end)

T.done()

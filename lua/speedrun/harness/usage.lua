-- harness/usage.lua: the help texts of `speedrun train`, `score` and `calibrate` (the commands
-- themselves: harness/cli.lua), printed by --help and after a usage error.
local M = {}

M.train = [[
usage: speedrun train [RECIPE] [options]
Trains a recipe in a supervised child process and writes results.json, log.txt, recipe.log
and loss.svg to the output folder. With no RECIPE: tasks/default/recipe.lua on the default
corpus, at the scale that fits (proxy on a GPU, demo on the CPU).
  --scale S          micro | demo | proxy | full | auto (default auto)
  --device D         cpu | cuda | auto (default auto: cuda when usable)
  --steps N          override the scale's number of steps
  --scale-schedule   with --steps: scale the schedule's phases (warmup, warmdown, cooldown, or the
                     recipe's schedule_keys) by the same factor, as the step tuner does
  --seed N           seed (default 1)
  --data X           corpus name (default, tiny, fineweb10B) or a folder of shards
  --out DIR          output folder (default runs/<recipe>-<time> next to the recipe)
  --time-limit S     wall-time limit in seconds (default by scale: micro 600, demo 1800, proxy/full 3600;
                     with --time-budget, the budget is added to it)
  --time-budget S    stop training when the host's train time reaches S seconds (checked between
                     steps), then validate; the run may stop before its planned steps
  --mem-limit SIZE   host memory limit, e.g. 4G (default 80% of RAM)
  --gpu-mem-limit SIZE   GPU memory cap (exported as SPEEDRUN_CUDA_MEM_LIMIT)
  --val-every N      validate every N steps (train mode only)
  --cuda-graph M     auto | off: replay the step as a CUDA graph when safe (default auto)
  --stream P         fixed (default) | random: the training stream starts at its first token, or at
                     a secret random place drawn for the run (score's and calibrate's default)
  --restricted       run the recipe in the score-mode sandbox
  --threads N        CPU threads
  --quiet            no progress or log lines
See docs/harness.md.
]]

M.score = [[
usage: speedrun score WORKSPACE [options]
Scores WORKSPACE/recipe.lua in the restricted environment: K runs with seeds seed..seed+K-1;
per run train time, validation loss, validity; mean, std, a one-sided t-test that the mean
validation loss is below the target (verdict: pass when p < 0.01 and every run completed);
with --task N, FSR = (t_N - t) / (t_N - t_{N+1}) against the calibration file.
  --task N           the task (start record N, target record N+1)
  --scale S          micro | demo | proxy | full (default proxy on a GPU, micro on the CPU)
  --runs K           number of runs (default 3; with --task at proxy scale, the number its
                     references were tuned for, which --runs may lower, not raise)
  --seed N           first seed (default 1)
  --alpha A          significance level (default 0.01)
  --calibration F    calibration file (default $SPEEDRUN_CALIBRATION or <checkout>/calibration.json)
  --out DIR          output folder (default WORKSPACE/runs/score-<time>)
  --time-budget S    each run trains until the host's train time reaches S seconds (as train)
  --stream P         random | fixed: where each run's training stream starts (default: as the
                     task's references were calibrated; random without --task)
  and the run options of `speedrun train` (--device, --data, --time-limit, --mem-limit, ...)
]]

M.calibrate = [[
usage: speedrun calibrate [options]
Runs reference recipes (tasks/record_NN/recipe.lua) K times on this machine and stores the
measured train times (mean, std, card, software) in the calibration file used by `score`.
  --tasks LIST       record numbers, e.g. 1,2,3 or 1-5 (default: every tasks/record_NN found)
  --tasks-dir DIR    where the record folders are (default <checkout>/tasks)
  --recipe FILE --name NAME   calibrate one recipe under a name instead
  --scale S          (default proxy on a GPU, micro on the CPU)
  --runs K           (default 3; without --tune-steps at proxy scale, a reference whose stored budget
                     was tuned for scores of N runs is timed with N: record 1's 10)
  --calibration F    (default $SPEEDRUN_CALIBRATION or <checkout>/calibration.json)
  --tune-steps       first find each recipe's smallest step budget whose K runs reach the scale's
                     target under the score's rule (mean below the target, t-test p < alpha), the
                     schedule's warmup/warmdown scaled with it; write it into the recipe's scale
                     table; check that 80 % of it fails the rule (a cut near the limit runs again
                     with fresh seeds, judged on both); store the tuned runs' times and
                     the search (every probe) in the calibration file. The budget found is
                     confirmed with K fresh seeds, and the 2K runs pooled must pass a score of K
                     runs >= 90 % of the time (else it steps up by 2, 4, 8 % ...): those K runs,
                     one at a time, are the entry's times. --steps N: the first probe;
                     --target X: tune to X and write target_val_loss = X into the table too;
                     --bracket LO:HI: the first two probes (resume a search cut by a time limit
                     from its last bracket: LO failed, HI passed); --bracket auto: each recipe's
                     from its calibration entry (the last search's), a whole search without one;
                     an entry stored with its cut pending (a time limit in the cut): the cut alone,
                     after a step back when its recorded step-up overshot
  --runs-up-to N     --tune-steps: a budget that is not tight for scores of K runs (its 80 % cut
                     would pass more than 10 % of scores: noisy runs) is searched again for
                     scores of K + 2 runs, then K + 4 ..., at most N, until one is tight; the
                     task then scores with that many runs
  --alpha A          the t-test level of --tune-steps (default 0.01, as score)
  --probe-jobs N     --tune-steps: run a probe's K runs N at a time when N > 1 (default: K on a
                     GPU, 1 on the CPU); their losses decide the search, the confirmation's K runs
                     are timed one at a time for the calibration
  --untimed          --tune-steps: run the confirmation's K runs at once too (several recipes
                     tuned at once on one device): the entry keeps their shared-device times,
                     marked timed_alone = false, until a plain calibrate of the same budget re-times it
  --show             print the ladder of the calibration file instead (every reference's budget,
                     cut, time (its counted warm-up) and loss; every task's gap against 3 sigma),
                     running nothing;
                     --card NAME picks the card (default: the file's only card, else this one)
  --apply            write each tuned entry's budget (steps, schedule, target) of the file (card,
                     scale as --show) into its recipe (--tasks, --tasks-dir), running nothing: only
                     when the result is the very source the entry was measured with (its SHA-256)
  --stream P         random (default) | fixed: where each run's training stream starts; entries
                     record it and a task's score runs as its references did
A plain calibrate keeps an entry's `tune` record when the recipe's budget is still the tuned one.
  and the run options of `speedrun train`
]]

return M

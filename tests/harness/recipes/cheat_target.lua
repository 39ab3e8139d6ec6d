-- Cheat (issue 14, class 6): a workspace that moves its own target. Scored with `--task N` and no
-- calibration entry, the harness took the workspace's target_val_loss and val_tokens: a target
-- no model can miss, a tiny validation set, one training step.
local r = dofile("good.lua")
r.name = "cheat-target"
local c = r.config.micro
c.target_val_loss = 1000
c.val_tokens = 64
c.steps = 1
c.val_every = nil
return r

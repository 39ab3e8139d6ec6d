-- cheat (weak): the workspace chooses val_batch, so with --task N (the calibrated val_tokens
-- imposed) it still decides how many validation tokens count: val_tokens is rounded down to whole
-- chunks of val_batch.B x val_batch.T, so a chunk just over half of val_tokens drops almost half
-- of the validation set (its tail), and the validation sequence length (context) is its own too.
local r = dofile("good.lua")
r.name = "cheat-valbatch"
r.config.micro.val_batch = {B = 17, T = 16}   -- 272 tokens of the calibrated 512
return r

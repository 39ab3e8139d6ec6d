local r = {config = {micro = }}
return r

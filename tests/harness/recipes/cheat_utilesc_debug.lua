-- cheat_utilesc's helper: run with the process's own globals, it hands them their debug library
return debug

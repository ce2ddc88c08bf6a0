"""`buildit run`: a whole pipeline run on this machine, no server, same planner and executors."""

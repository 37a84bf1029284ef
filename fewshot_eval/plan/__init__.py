"""Plan stage: expand a sweep into jobs, locate each job's results, decide what to skip."""

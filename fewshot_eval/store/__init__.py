"""Store stage: result layout, atomic writes, completion status, the scheduled-jobs log."""

"""Run stage: the body of one job (``run/job.py``), locally or on a SLURM node."""

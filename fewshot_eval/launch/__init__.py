"""Launch stage: hand planned jobs to a Hydra launcher (local, local pools, SLURM pools) and log them."""

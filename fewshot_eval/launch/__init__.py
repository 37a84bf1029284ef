"""Launch stage: hand planned jobs to a Hydra launcher and log them.

* ``dispatch.py``     -- the sweeper's hand-off: the batch to launch (old results moved aside), the returns
* ``batch.py``        -- what fewshot-eval's launchers receive (``LaunchBatch``), and ``runs_locally``
* ``sequential.py``   -- ``hydra/launcher=local``: each job in this process
* ``parallel.py``     -- ``hydra/launcher=local_parallel``: job processes in per-model pools
  (``parallel_job.py``: what one job process runs)
* ``slurm/``          -- ``hydra/launcher=submitit_slurm``: one job array per model setting
* ``returns.py``, ``joblog.py`` -- how a job ended; ``scheduled_jobs.jsonl``

The Hydra plugin classes, one module per launcher, live in ``hydra_plugins/fewshot_eval_plugins/``.
"""

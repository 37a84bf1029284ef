"""SLURM launch: one submitit job array per model setting (a "pool"), submit-and-return by default.

The plugin (``hydra_plugins/fewshot_eval_plugins/slurm_launcher.py``) hands the planned batch to
:func:`fewshot_eval.launch.slurm.submission.launch_pools`. By job:

* ``pools.py``           -- jobs grouped by model setting, arrays and lanes (max_parallel per pool); launcher
  options -> submitit parameters (with the site's); the cluster's limits (``scontrol show config``)
* ``submission.py``      -- the submission: the pool's durable record, sbatch per array, markers, the submit lock
* ``staged_executor.py`` -- submitit's SlurmExecutor with every file a task needs written before sbatch
* ``node_start.py``      -- what a task runs first on the node (its pickled call into place), then submitit
* ``node_jobs.py``       -- what runs on the node (one task, a combined job, ranks > 0)
* ``waiting.py``         -- the summary after submission; waiting for the jobs (``wait: true``)
* ``probes.py``          -- every SLURM command with a bounded time; a daemon that does not answer is down
* ``job_states.py``      -- what SLURM says about jobs (squeue/sacct, many at once; pending reasons)
* ``pending_check.py``   -- the planner's view of recorded submissions: pending or resubmit, asked once per plan
* ``site_profiles.py``   -- the sweep's site profile (``site=<name>``, or found by ClusterName) and its env

A model setting with ``job.combine_tasks: true`` runs all its jobs in one SLURM job.
"""

# Jobs queued before the split into this package were pickled with these names
# (fewshot_eval.launch.slurm.PoolCall / .CombinedJobs): keep them importable here.
from fewshot_eval.launch.slurm.node_jobs import CombinedJobs, PoolCall  # noqa: F401

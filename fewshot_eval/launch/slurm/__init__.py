"""SLURM launch: one submitit job array per model setting (a "pool"), submit-and-return by default.

The plugin (``hydra_plugins/fewshot_eval_plugins/slurm_launcher.py``) hands the planned batch to
:func:`fewshot_eval.launch.slurm.submission.launch_pools`. By job:

* ``pools.py``       -- jobs grouped by model setting; launcher options -> submitit parameters
* ``submission.py``  -- one array per pool, the intent and ``submitted.json`` records, the submit lock
* ``node_jobs.py``   -- what runs on the node (one task, a combined job, ranks > 0)
* ``waiting.py``     -- the summary after submission; waiting for the jobs (``wait: true``)
* ``job_states.py``  -- what SLURM says about a recorded submission (squeue/sacct, pending reasons):
  read by the planner of the next sweep
* ``site_profiles.py`` -- the sweep's site profile (``site=<name>``, or found by ClusterName) and its env

A model setting with ``job.combine_tasks: true`` runs all its jobs in one SLURM job.
"""

# Jobs queued before the split into this package were pickled with these names
# (fewshot_eval.launch.slurm.PoolCall / .CombinedJobs): keep them importable here.
from fewshot_eval.launch.slurm.node_jobs import CombinedJobs, PoolCall  # noqa: F401

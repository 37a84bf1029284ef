"""The lm-evaluation-harness bridge: its task catalog (``lm_eval:<name>``) as a task source.

``catalog_index`` (lm-eval's TaskManager and its index kept on disk), ``catalog_identity`` (what
identifies a catalog task, its local files), ``catalog_checks`` (its planning checks),
``catalog_search`` (``fewshot-eval list catalog``), ``catalog_runner`` (lm-eval builds requests
and measures while our predictor scores them)."""

"""The lm-evaluation-harness bridge: its task catalog (``lm_eval:<name>``) as a task source.

``catalog_index`` (the catalog's name -> YAML index kept on disk, the YAMLs of planned names),
``catalog_manager`` (lm-eval's TaskManager over that index, for jobs), ``catalog_identity`` (what
identifies a catalog task, its local files), ``catalog_checks`` (its planning checks),
``catalog_search`` (``fewshot-eval list catalog``), ``catalog_runner`` (lm-eval builds requests
and measures while our predictor scores them)."""

"""Tasks: what a task definition (``conf/task_def/*.yaml``) says and how a job reads it.

``definitions`` (the YAML validated into a ``TaskDef``), ``task_data`` (reading and normalising
its splits), ``selection`` (what the params select: templates, metrics, languages, splits),
``templates``, ``demonstrations``, ``shapes`` (task kinds and their rows), ``chat`` (chat-format
prompts), ``generation_task`` and ``perplexity_task`` (the non-ranking kinds), ``task_checks``
(the planning checks of a task setting)."""

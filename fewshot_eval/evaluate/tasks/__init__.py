"""Tasks: definitions (``conf/task_def/*.yaml``) and their data, templates, demonstrations, task
shapes, chat prompts, and the planning checks of a task setting."""

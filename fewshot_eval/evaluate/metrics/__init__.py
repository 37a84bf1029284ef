"""Metrics, each a function registered by name (:func:`fewshot_eval.evaluate.registry.register_metric`).

A new metric is one decorated function in a module here (see ``docs/extending.md``).
"""

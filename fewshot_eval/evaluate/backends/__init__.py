"""Model backends (predictors): one module per predictor, each a class on :class:`~fewshot_eval.evaluate.backends.predictor.Predictor`
registered by name (``clm``, ``vllm``, ``openai_completions``, ``random``, ``majority``).

A new backend is one module here with one decorated class (see ``docs/extending.md``).
"""

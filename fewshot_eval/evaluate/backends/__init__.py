"""Model backends (predictors): each a class on :class:`~fewshot_eval.evaluate.backends.predictor.Predictor`
registered by name, declaring what it needs and can do as class attributes (its capabilities).

* ``predictor.py`` -- the interface: requests, results, :class:`Predictor` and its capabilities;
* ``hf_base.py`` -- :class:`~fewshot_eval.evaluate.backends.hf_base.HFPredictor`, the base of the
  predictors that load a HuggingFace checkpoint: lm-eval's tokenisation, weights/chat/hf_overrides checks;
* ``clm/`` -- ``clm``, a HuggingFace causal LM (loading, tree and linear scoring, generation);
* ``vllm_engine.py`` -- ``vllm``; ``openai_completions.py`` -- a served model; ``baselines.py`` --
  ``random`` and ``majority``; ``tiny_model.py`` -- ``weights: tiny-gpt2``;
* ``model_checks.py`` -- the planning checks of a model setting.

No module outside this package names a predictor (``tests/test_architecture.py``): the rest of the
project asks ``registry.predictor_class(name)`` for a capability. A new backend is one module here
with one decorated class: the registry imports every module of this package (see
:mod:`fewshot_eval.evaluate.registry`; a plugin of your own lives in your config dir instead).
"""

"""``clm``: a HuggingFace causal LM, one module per job (see :mod:`.causal_lm`, the registered class).

``causal_lm.py`` (the class: settings, loading, the operations' entry points), ``model_loading.py``
(``load_model``, placement over devices), ``tree_scoring.py`` + ``prefix_tree.py`` (prefix-tree
scoring), ``linear_scoring.py`` (the fallback), ``greedy_generation.py`` (``generate_until``),
``out_of_memory.py`` (one retry at half the batch).
Importing this package registers ``clm``.
"""

from fewshot_eval.evaluate.backends.clm.causal_lm import CausalLMPredictor
from fewshot_eval.evaluate.backends.clm.greedy_generation import cut_at_stop
from fewshot_eval.evaluate.backends.clm.model_loading import load_model

__all__ = ["CausalLMPredictor", "cut_at_stop", "load_model"]

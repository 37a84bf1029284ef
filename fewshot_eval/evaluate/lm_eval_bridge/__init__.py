"""The lm-evaluation-harness bridge: its task catalog (``lm_eval:<name>``) as a task source, and
the runner that lets lm-eval build requests and measure while our predictor scores them."""

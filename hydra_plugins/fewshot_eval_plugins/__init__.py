"""Hydra plugins of fewshot-eval: the skip-completed sweeper and the local launchers."""

"""Report stage: collect results.json files into comparable tables."""

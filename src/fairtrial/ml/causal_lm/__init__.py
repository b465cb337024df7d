"""Causal language models: the training loop with per-token loss weights (train.py, tokens.py,
batching.py) and per-item scoring (scoring.py). See docs/ml.md."""

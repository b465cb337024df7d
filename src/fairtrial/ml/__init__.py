"""The shared model layer under the recipes (docs/ml.md).

Imports torch, transformers and the field's libraries, and nothing of fairtrial but its errors;
the import contracts (pyproject.toml, tests/test_architecture.py) enforce that.
"""

"""Run configuration: the typed schemas (grpo.py, recipe.py) and how files and overrides are read (files.py)."""

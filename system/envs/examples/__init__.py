"""Envs written the way a user writes theirs; the docs quote them and the tests check them."""

"""Recipes: the ML. Each recipe package exposes `RECIPE` (a `fairtrial.recipes.api.Recipe`)."""

"""mechintro: concept-injection introspection experiments on open language models."""

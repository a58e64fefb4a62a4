"""alphaprune: prune a trained classifier by alpha-blending cheap parallel branches into it."""

__version__ = "0.1.0"

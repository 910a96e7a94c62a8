"""Widget and plot logic behind the notebooks (matplotlib lives here, never in the model modules)."""

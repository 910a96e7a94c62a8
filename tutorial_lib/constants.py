"""Constants shared across the library, in a module that imports only the standard library (so that losses and
metrics can use them without pulling in the data pipeline's image libraries)."""

from pathlib import Path

#: The project folder (the clone): checkpoints/, benchmarks/, runs/, weights/ are found from here, wherever
#: a notebook or script runs (a copied notebook, a test's temporary folder, Colab).
PROJECT_ROOT = Path(__file__).resolve().parents[1]

#: Label value of void / unlabelled pixels: skipped by the losses and the metrics.
IGNORE_INDEX = 255

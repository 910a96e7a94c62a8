"""Constants shared across the library, in a module that imports nothing (so that losses and
metrics can use them without pulling in the data pipeline's image libraries)."""

#: Label value of void / unlabelled pixels: skipped by the losses and the metrics.
IGNORE_INDEX = 255

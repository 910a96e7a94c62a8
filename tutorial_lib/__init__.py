"""tutorial_lib: the tested reference implementations behind the TransUNet-from-Scratch notebooks."""

__version__ = "0.1.0"

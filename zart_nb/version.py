"""The version of zart-nb, in a module of its own: the notebook front shows it without
importing the package's public surface."""

__version__ = "0.1.0"

"""cvkit: a command-line toolkit for image classification with convolutional networks.

The library is importable without the CLI: ``from cvkit.data import prepare``.
"""

__version__ = "0.1.0"

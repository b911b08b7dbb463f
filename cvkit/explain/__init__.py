"""Layer 5: what a trained network looks at (``cvkit cam``) and what it has learned (``cvkit visualize``).

Imports nothing at package level: import the submodule you need.
"""

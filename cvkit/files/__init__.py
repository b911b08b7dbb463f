"""Layer 2: one owner per file format, image decoding and atomic writes.

Each file cvkit reads or writes has one typed reader/writer here (README.md, "File contracts");
nothing else opens those files by name. Importing this package loads nothing heavy: each module
imports numpy, pandas or torch only where it needs them.
"""

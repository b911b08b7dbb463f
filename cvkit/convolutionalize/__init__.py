"""``cvkit convolutionalize``: a classifier as a dense predictor (score maps over images of any size).

The conversion itself is :func:`cvkit.models.convolutional.to_convolutional` (``load_run`` rebuilds a
converted run with it); this package adds the dense maps: shift-and-stitch and maps in the image's frame.
"""

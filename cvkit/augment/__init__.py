"""``cvkit augment``: write a dataset's augmentation policy (transforms/policy.py), preview it
(``preview.py``), or materialize augmented copies as files (``materialize.py``)."""

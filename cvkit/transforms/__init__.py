"""Normalization statistics (``stats.py``), the augmentation policy (``policy.py``, light: the CLI
reads it at start-up) and the batched on-device ops (``batch.py``, ``geometric.py``,
``photometric.py``, ``mixing.py``). Nothing is imported here, so the policy stays light."""

"""Forgetting training images: ``matching`` (match, the default), ``relabel`` (mislabelled
images) and ``l2ul`` with its ``adversarial`` examples and weight ``importance``
(docs/algorithms.md §2)."""

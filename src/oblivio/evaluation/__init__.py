"""Evidence of forgetting (docs/algorithms.md §4): accuracy, membership inference, depth."""

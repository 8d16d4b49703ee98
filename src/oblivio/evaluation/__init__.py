"""Evidence of forgetting (ALGORITHMS.md section 4): accuracy, membership inference, depth."""

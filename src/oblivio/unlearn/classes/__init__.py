"""Training-free class forgetting: ``forget`` runs the job; ``plan``, ``samples``,
``statistics``, ``subspaces``, ``projection``, ``alpha_selection``, ``contrast`` and
``ratio_selection`` are its stages (docs/algorithms.md §1)."""

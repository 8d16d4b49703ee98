"""The baselines every unlearning claim is measured against (docs/algorithms.md §3): ``run``
dispatches them (and relabel) into a model directory; ``gradient``, ``ssd``, ``scrub``,
``salun`` and ``amun`` hold the methods."""

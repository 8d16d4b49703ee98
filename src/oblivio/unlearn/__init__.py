"""Unlearning methods. Plain functions on plain inputs: nothing here knows KFP or MLflow.

- ``classes/``: training-free class forgetting (samples, statistics, subspaces, the projection
  and the energy contrast, how alpha and the ratio are chosen, batch-norm rounds).
- ``instances/``: forgetting training images (match, relabel, L2UL with its adversarial
  examples and weight importance).
- ``baselines/``: what every claim is measured against (fine-tune, NegGrad(+), random label,
  SSD, SCRUB, SalUn, AMUN, the retrain oracle).
- Here, shared by all three: the checked request (``requests``), what a model has already
  forgotten (``forgotten``), batch-norm re-estimation (``batchnorm``), the retain guard
  (``guard``) and the fine-tuning loop of the gradient methods (``tuning``); above them the
  registry (``methods``) and the pipeline's steps over files (``steps``).
"""

"""Unlearning methods. Plain functions on plain inputs: nothing here knows KFP or MLflow."""

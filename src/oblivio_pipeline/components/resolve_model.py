from kfp import dsl

from oblivio_pipeline import component


@component
def resolve_model(model_uri: str, job_id: str, job_name: str, params_json: str,
                  model: dsl.Output[dsl.Model]) -> str:
    """Download a registered model and open the pipeline run's MLflow run.

    Args:
        model_uri: Registry URI of the model to unlearn from, e.g. models:/NAME@champion.
        job_id: The pipeline job's id; names the MLflow run every step logs into.
        job_name: The pipeline job's name, used as the MLflow run name.
        params_json: The pipeline parameters, logged as the run's params.
        model: The oblivio model directory of the parent version.

    Returns:
        The parent version number.
    """
    import json

    from oblivio.tracking.publish import resolve_parent

    parent = resolve_parent(model_uri, model.path, job_id, job_name, json.loads(params_json))
    model.metadata.update(parent)
    return parent["version"]

from kfp import dsl

from oblivio_pipeline import component


@component
def compute_subspaces(retain_statistics: dsl.Input[dsl.Artifact],
                      forget_statistics: dsl.Input[dsl.Artifact],
                      subspaces: dsl.Output[dsl.Artifact]) -> None:
    """Eigendecompose each layer's retain and forget statistics once.

    Args:
        retain_statistics: Statistics of the retain samples.
        forget_statistics: Statistics of the forget samples.
        subspaces: Per-layer eigenbases (safetensors).
    """
    from oblivio.steps import subspaces_step

    subspaces.metadata.update(subspaces_step(retain_statistics.path, forget_statistics.path,
                                             subspaces.path))

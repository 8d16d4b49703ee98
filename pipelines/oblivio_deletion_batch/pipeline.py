"""The deletion-batch pipeline: what a recurring run executes. It claims every pending request
from the ledger (skipping the rest when there is none), forgets the batch's classes and then its
images with the unlearning pipeline (nested, the same steps and gates as a manual run; each
part registers under its own deletion-batch key, so a re-run never makes a second version),
settles the classes against the ledger, and completes the batch (settling the images).

Everything after the claim sits in a nested pipeline, ``honour-batch``, that takes the claim's
outputs as its inputs, and every condition reads those inputs: kfp.local (2.17) cannot resolve a
condition on an output of a task with several outputs, and with this shape the pipeline
compiled for Kubeflow is the one that runs end to end locally. Each part's unlearning run logs
into its own MLflow run of the job (keyed by the job id and the part's deletion-batch key).

The images' part starts from the version the classes' part left as champion: settle_batch
returns it, and ``dsl.OneOf`` carries it out of the branch that ran, which also orders the
parts. Every ledger step names the claim (the job id and the claim's fencing token), and the
ledger refuses it once the claim lost the batch. complete_batch sits in both branches of the
images' condition, not after a second ``dsl.OneOf``, and that second branch is an If, not a
``dsl.Else``: kfp 2.17's compiler loses the condition's input otherwise. A part that fails
(gates, promotion) sends its own requests back with the reason and the other part still runs
(complete_batch then fails the run); a run that dies leaves its lease to expire, and the next
run takes the batch over.
"""

from kfp import dsl

from oblivio_pipeline import NEEDS_BACKEND, builds_quickly
from oblivio_pipeline.components import claim_batch, complete_batch, settle_batch
from oblivio_pipeline.pipelines.oblivio_unlearning.pipeline import (
    _configure,
    make_unlearning_pipeline,
)


@builds_quickly
def make_deletion_batch_pipeline(on_cluster: bool = True):
    """The pipeline; ``on_cluster=False`` leaves out the Kubernetes settings."""
    unlearning = make_unlearning_pipeline(on_cluster)

    @dsl.pipeline(name="honour-batch")
    def honour_batch(
        batch_id: str, token: str, hold: str, forget_classes: str, forget_ids_uri: str,
        classes_key: str, ids_key: str, model_name: str, dataset_uri: str, max_attempts: int,
        retain_per_class: int, forget_samples: int, val_per_class: int,
        val_forget_samples: int, class_method: str, instance_method: str, instance_max_steps: int,
        instance_max_seconds: float,
        max_forget_acc: float, max_retain_drop: float, min_mia_efficacy: float,
        max_reestimated_forget_acc: float, instance_max_test_drop: float, instance_auc_z: float,
        instance_auc_one_sided: bool, shadows_uri: str,
        relearn_steps: int, device: str, shards: int, gpu_count: str, compute_cpu: str,
        compute_memory: str, node_selector: dict,
        tolerations: list, secret_name: str,
    ) -> None:
        """A claimed batch: its classes, then its images, then complete. Its conditions read
        this pipeline's inputs: kfp.local (2.17) resolves those, not a condition on an output
        of a task with several outputs, such as claim_batch's."""
        cluster = {"on_cluster": on_cluster, "secret_name": secret_name,
                   "node_selector": node_selector, "tolerations": tolerations,
                   "compute_cpu": compute_cpu, "compute_memory": compute_memory}
        shared = {"model_name": model_name, "dataset_uri": dataset_uri,
                  "retain_per_class": retain_per_class, "forget_samples": forget_samples,
                  "val_per_class": val_per_class, "val_forget_samples": val_forget_samples,
                  "class_method": class_method, "instance_method": instance_method,
                  "instance_max_steps": instance_max_steps,
                  "instance_max_seconds": instance_max_seconds, "max_forget_acc": max_forget_acc,
                  "max_retain_drop": max_retain_drop, "min_mia_efficacy": min_mia_efficacy,
                  "max_reestimated_forget_acc": max_reestimated_forget_acc,
                  "instance_max_test_drop": instance_max_test_drop,
                  "instance_auc_z": instance_auc_z,
                  "instance_auc_one_sided": instance_auc_one_sided,
                  "shadows_uri": shadows_uri, "promote": True,
                  "relearn_steps": relearn_steps, "batch_hold": hold,
                  "device": device, "shards": shards, "gpu_count": gpu_count,
                  "compute_cpu": compute_cpu,
                  "compute_memory": compute_memory, "node_selector": node_selector,
                  "tolerations": tolerations, "secret_name": secret_name}

        def settle(kind: str) -> dsl.PipelineTask:
            task = _configure(settle_batch(model_name=model_name, batch_id=batch_id, token=token,
                                           job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, kind=kind,
                                           max_attempts=max_attempts), **cluster, ledger=True)
            task.set_caching_options(False)
            return task.set_display_name(f"settle {kind}")

        def complete(champion) -> dsl.PipelineTask:
            task = _configure(complete_batch(model_name=model_name, batch_id=batch_id,
                                             token=token,
                                             job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                                             max_attempts=max_attempts,
                                             champion_version=champion), **cluster, ledger=True)
            task.set_caching_options(False)
            return task

        with dsl.If(batch_id != "", name="pending"):  # nothing pending: nothing runs
            with dsl.If(forget_classes != ""):
                forgot = unlearning(forget_classes=forget_classes, forget_ids_uri="",
                                    model_alias="champion", deletion_batch=classes_key, **shared)
                classes_settled = settle("classes").after(forgot)
            with dsl.Else(name="no-classes"):
                no_classes = settle("classes")
            start = dsl.OneOf(classes_settled.output, no_classes.output)
            with dsl.If(forget_ids_uri != ""):
                erased = unlearning(forget_classes="", forget_ids_uri=forget_ids_uri,
                                    model_alias=start, deletion_batch=ids_key, **shared)
                complete(start).after(erased)
            # a second If, not dsl.Else: kfp 2.17 cannot compile an Else whose tasks read a
            # dsl.OneOf (it loses the condition's input)
            with dsl.If(forget_ids_uri == "", name="no-images"):
                complete(start)

    @dsl.pipeline(name="oblivio-deletion-batch",
                  description="Honour every pending deletion request exactly once: claim them "
                              "from the ledger, forget their classes then their images from the "
                              "champion, register and promote through the gates, mark them "
                              "honoured. " + NEEDS_BACKEND)
    def deletion_batch_pipeline(
        model_name: str = "fashion-classifier",
        dataset_uri: str = "s3://oblivio/datasets/fashion-mnist",
        batch_root: str = "s3://oblivio/batches",
        lease_minutes: int = 360,
        max_attempts: int = 3,
        retain_per_class: int = 100,
        forget_samples: int = 250,
        val_per_class: int = 50,
        val_forget_samples: int = 250,
        class_method: str = "projection",
        instance_method: str = "match",
        instance_max_steps: int = 200,
        instance_max_seconds: float = 0.0,
        max_forget_acc: float = 0.01,
        max_retain_drop: float = 0.025,
        min_mia_efficacy: float = 0.9,
        max_reestimated_forget_acc: float = 0.01,
        instance_max_test_drop: float = 0.005,
        instance_auc_z: float = 2.576,
        instance_auc_one_sided: bool = False,
        shadows_uri: str = "",
        relearn_steps: int = 0,
        device: str = "auto",
        shards: int = 1,
        gpu_count: str = "1",
        compute_cpu: str = "4",
        compute_memory: str = "16Gi",
        node_selector: dict = {},  # noqa: B006 -- the pipeline's default, compiled, never mutated
        tolerations: list = [],  # noqa: B006
        secret_name: str = "oblivio-credentials",
    ) -> None:
        """One deletion batch, parameterised for the Kubeflow UI.

        Args:
            model_name: Registered model whose requests are honoured.
            dataset_uri: Dataset the model was trained on (directory or s3:// URI).
            batch_root: Folder or s3:// URI where each batch's sample ids are written.
            lease_minutes: How long a claim holds before a later run may take the batch over
                (longer than a run takes).
            max_attempts: Attempts (failed batches, or runs that died) before a request is
                marked failed.
            retain_per_class: Classes: retain samples per kept class.
            forget_samples: Classes: samples of the forget classes.
            val_per_class: Classes: validation samples per kept class.
            val_forget_samples: Classes: validation samples of the forget classes.
            class_method: Classes: projection or contrast.
            instance_method: Images: match, relabel (for mislabelled images) or l2ul.
            instance_max_steps: Images, match: cap on steps.
            instance_max_seconds: Images: wall-clock budget on the method's steps (0: none);
                the version records when it ended them, and the gates judge it as any other.
            max_forget_acc: Gate: highest forget-class test accuracy.
            max_retain_drop: Gate: largest retain test accuracy drop vs the parent.
            min_mia_efficacy: Gate: lowest MIA-efficacy (confidence), classes.
            max_reestimated_forget_acc: Gate, classes: highest forget-class test accuracy once
                batch norm is re-estimated on kept data.
            instance_max_test_drop: Gate, images: largest test accuracy drop vs the parent.
            instance_auc_z: Gate, images: spreads the loss attack's AUC may lie from 0.5.
            instance_auc_one_sided: Gate, images: fail only a result still familiar.
            shadows_uri: Images: the original's shadow models (`oblivio pool shadows`; empty:
                none): match aims at them, the evaluation judges against them, and once the batch
                is over they forget the images it honoured.
            relearn_steps: Evaluation, classes: relearning cap in steps (0: off).
            device: cpu, cuda or auto.
            shards: Tasks the capture and the evaluation's training-split pass spread over.
            gpu_count: GPUs for the steps that run the model.
            compute_cpu: CPU request of the steps that run the model.
            compute_memory: Memory request of the steps that run the model.
            node_selector: Node selector for every step.
            tolerations: Tolerations for every step.
            secret_name: Kubernetes secret with the ledger URL, MLflow and S3 credentials.
        """
        claim = _configure(claim_batch(
            model_name=model_name, batch_root=batch_root, lease_minutes=lease_minutes,
            max_attempts=max_attempts, job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            shadows_uri=shadows_uri),
            on_cluster=on_cluster, secret_name=secret_name, node_selector=node_selector,
            tolerations=tolerations, compute_cpu=compute_cpu, compute_memory=compute_memory,
            ledger=True)
        claim.set_caching_options(False)  # the ledger changes between runs
        honour_batch(
            batch_id=claim.outputs["batch_id"], token=claim.outputs["token"],
            hold=claim.outputs["hold"],
            forget_classes=claim.outputs["forget_classes"],
            forget_ids_uri=claim.outputs["forget_ids_uri"],
            classes_key=claim.outputs["classes_key"], ids_key=claim.outputs["ids_key"],
            model_name=model_name, dataset_uri=dataset_uri, max_attempts=max_attempts,
            retain_per_class=retain_per_class, forget_samples=forget_samples,
            val_per_class=val_per_class, val_forget_samples=val_forget_samples,
            class_method=class_method, instance_method=instance_method,
            instance_max_steps=instance_max_steps, instance_max_seconds=instance_max_seconds,
            max_forget_acc=max_forget_acc, max_retain_drop=max_retain_drop,
            min_mia_efficacy=min_mia_efficacy,
            max_reestimated_forget_acc=max_reestimated_forget_acc,
            instance_max_test_drop=instance_max_test_drop, instance_auc_z=instance_auc_z,
            instance_auc_one_sided=instance_auc_one_sided, shadows_uri=shadows_uri,
            relearn_steps=relearn_steps,
            device=device, shards=shards,
            gpu_count=gpu_count, compute_cpu=compute_cpu, compute_memory=compute_memory,
            node_selector=node_selector, tolerations=tolerations, secret_name=secret_name,
        ).set_display_name("honour the batch")

    return deletion_batch_pipeline


deletion_batch_pipeline = make_deletion_batch_pipeline()

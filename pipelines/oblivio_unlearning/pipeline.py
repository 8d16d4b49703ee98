"""The unlearning pipeline, one task per step of docs/architecture.md's table. A forget spec
naming classes takes a class branch (projection or contrast, the registry's pipeline methods);
one naming training sample ids (a deletion request) takes the instance branch (L2UL). All share
the resolve, sample, evaluate and register steps, so a deletion batch of images gets the same
evaluation, gates and lineage as a forgotten class.

Platform parameters are typed as the Kubeflow backend's driver reads them: the node selector a
struct (dict), the tolerations a list, the GPU count a string (the resource field is a string
it fills in), as kfp-kubernetes and the upstream samples declare them."""

from kfp import dsl, kubernetes
from kfp.dsl import pipeline_channel

from oblivio_pipeline import NEEDS_BACKEND, builds_quickly
from oblivio_pipeline.components import (
    apply_contrast,
    apply_projection,
    capture_activations,
    compute_subspaces,
    evaluate_model,
    merge_statistics,
    plan_shards,
    predict_outputs,
    record_outcome,
    register_model,
    resolve_model,
    sample_data,
    unlearn_instances,
    validate_request,
)

#: Keys of the Kubernetes secret that reach every step as environment variables: the tracking
#: URI is required (without it a step would fall back to a SQLite file inside its pod and fail
#: later, confusingly), the credentials only where the servers ask for them.
REQUIRED_SECRET_ENV = {"MLFLOW_TRACKING_URI": "MLFLOW_TRACKING_URI"}
#: The ledger's URL, required by the steps that read it (a step without it would open a SQLite
#: file inside its pod: an empty ledger, silently).
LEDGER_SECRET_ENV = {"OBLIVIO_LEDGER_URL": "OBLIVIO_LEDGER_URL"}
SECRET_ENV = {"MLFLOW_TRACKING_USERNAME": "MLFLOW_TRACKING_USERNAME",
              "MLFLOW_TRACKING_PASSWORD": "MLFLOW_TRACKING_PASSWORD",
              "AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",
              "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
              "AWS_ENDPOINT_URL": "AWS_ENDPOINT_URL"}


#: CPU and memory a step that does not run the model asks for.
LIGHT_CPU, LIGHT_MEMORY = "1", "2Gi"
#: Deadlines (pod activeDeadlineSeconds, kfp-kubernetes set_timeout) of a step that does not
#: run the model and of one that does: a hung pod is killed and its step fails (or retries)
#: instead of holding the run, and with it every later deletion batch, forever. Both stay well
#: under the batch's 6-hour default lease.
LIGHT_TIMEOUT_S, COMPUTE_TIMEOUT_S = 30 * 60, 3 * 60 * 60
#: Shards of one fan-out that run at once. A ParallelFor's parallelism is compiled in, not a
#: run parameter; the run's ``shards`` says how many there are.
PARALLEL_SHARDS = 16


def _configure(task: dsl.PipelineTask, on_cluster: bool, secret_name: str,
               node_selector: dict, tolerations: list, compute_cpu: str, compute_memory: str,
               gpu_count: str | None = None, retries: int = 0,
               ledger: bool = False) -> dsl.PipelineTask:
    """Credentials from the secret, scheduling from the parameters, a deadline, resources (the
    steps that run the model, ``gpu_count`` given, ask for GPUs and the compute CPU and memory):
    Kubernetes settings, which kfp's local runner cannot resolve, so it gets none."""
    if on_cluster:
        kubernetes.use_secret_as_env(task, secret_name, REQUIRED_SECRET_ENV, optional=False)
        # promotion checks the ledger too: every step may read it, the batch steps must
        kubernetes.use_secret_as_env(task, secret_name,
                                     SECRET_ENV | ({} if ledger else LEDGER_SECRET_ENV),
                                     optional=True)
        if ledger:
            kubernetes.use_secret_as_env(task, secret_name, LEDGER_SECRET_ENV, optional=False)
        kubernetes.add_node_selector_json(task, node_selector)
        kubernetes.add_toleration_json(task, tolerations)
        kubernetes.set_timeout(task, LIGHT_TIMEOUT_S if gpu_count is None else COMPUTE_TIMEOUT_S)
        if gpu_count is not None:
            task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(gpu_count)
            task.set_cpu_request(compute_cpu).set_memory_request(compute_memory)
            # kfp 2.17 puts resource channels in the task's inputs but not in the enclosing
            # DAG's: registered, the compiler declares them on every condition, loop and exit
            # handler DAG between the task and the root (the backend driver needs that)
            task.register_pipeline_channels([c for c in (gpu_count, compute_cpu, compute_memory)
                                             if isinstance(c, pipeline_channel.PipelineChannel)])
        else:
            task.set_cpu_request(LIGHT_CPU).set_memory_request(LIGHT_MEMORY)
    if on_cluster and retries:  # locally (kfp.local honours retries too) a failure is final
        task.set_retry(retries, backoff_duration="30s", backoff_factor=2.0)
    return task


@builds_quickly
def make_unlearning_pipeline(on_cluster: bool = True):
    """The pipeline; ``on_cluster=False`` leaves out the Kubernetes settings for kfp.local."""

    @dsl.pipeline(name="oblivio-unlearning",
                  description="Forget whole classes (training-free projection or contrast) or "
                              "the training images of a deletion request (L2UL) from a "
                              "registered image classifier; evaluate with membership "
                              "inference; register the unlearned version with its lineage and "
                              "promote it through gates. " + NEEDS_BACKEND)
    def unlearning_pipeline(
        model_name: str = "fashion-classifier",
        model_alias: str = "champion",
        dataset_uri: str = "s3://oblivio/datasets/fashion-mnist",
        forget_classes: str = "7",
        forget_ids_uri: str = "",
        retain_per_class: int = 100,
        forget_samples: int = 250,
        val_per_class: int = 50,
        val_forget_samples: int = 250,
        seed: int = 0,
        class_method: str = "projection",
        alpha_mode: str = "auto",
        alpha_r: float = 100.0,
        alpha_f: float = 3.0,
        ratio_mode: str = "auto",
        ratio: float = 8.0,
        rounds: int = 2,
        blocks: int = 0,
        forget_target: float = 0.01,
        max_forget_acc: float = 0.01,
        max_retain_drop: float = 0.025,
        min_mia_efficacy: float = 0.9,
        max_reestimated_forget_acc: float = 0.01,
        instance_max_test_drop: float = 0.005,
        instance_auc_z: float = 2.576,
        instance_auc_one_sided: bool = False,
        instance_method: str = "match",
        instance_max_steps: int = 200,
        instance_ablation: str = "adv+imp",
        instance_max_epochs: int = 300,
        instance_max_seconds: float = 0.0,
        shadows_uri: str = "",
        relearn_steps: int = 0,
        promote: bool = True,
        deletion_batch: str = "",
        batch_hold: str = "",
        device: str = "auto",
        shards: int = 1,
        gpu_count: str = "1",
        compute_cpu: str = "4",
        compute_memory: str = "16Gi",
        node_selector: dict = {},  # noqa: B006 -- the pipeline's default, compiled, never mutated
        tolerations: list = [],  # noqa: B006
        secret_name: str = "oblivio-credentials",
    ) -> None:
        """Unlearning, parameterised for the Kubeflow UI.

        Args:
            model_name: Registered model to unlearn from.
            model_alias: Its alias (or version number) to start from.
            dataset_uri: Dataset the model was trained on (directory or s3:// URI).
            forget_classes: Classes to forget, indices or names, comma-separated (used when
                forget_ids_uri is empty).
            forget_ids_uri: A deletion request: text or Parquet file (s3:// or path) of
                training sample ids. When set, the instance branch (L2UL) runs.
            retain_per_class: Retain samples per kept class.
            forget_samples: Samples of the forget classes.
            val_per_class: Validation samples per kept class for alpha selection.
            val_forget_samples: Validation samples of the forget classes.
            seed: Seed of every random draw.
            class_method: projection (scaled subspace projection, the default) or contrast
                (energy contrast: the better choice for a ViT).
            alpha_mode: auto (grid on validation) or fixed (alpha_r and alpha_f).
            alpha_r: Retain alpha in fixed mode.
            alpha_f: Forget alpha in fixed mode.
            ratio_mode: contrast: auto (thresholds and rounds chosen on validation) or fixed.
            ratio: contrast, fixed mode: forget-to-retain energy ratio above which input
                directions are removed.
            rounds: contrast: most rounds (each re-captures the edited model's statistics).
            blocks: contrast: how many of the network's last blocks to edit; 0 chooses the depth
                on validation (auto mode) or edits every layer (fixed mode).
            forget_target: Validation forget accuracy alpha (or ratio) selection must reach.
            max_forget_acc: Gate: highest forget-class test accuracy.
            max_retain_drop: Gate: largest retain test accuracy drop vs the parent.
            min_mia_efficacy: Gate: lowest MIA-efficacy (confidence), class branch.
            max_reestimated_forget_acc: Gate, class branch: highest forget-class test accuracy
                once batch norm is re-estimated on kept data (a model without batch norm is
                not judged on it).
            instance_max_test_drop: Gate, instance branch: largest test accuracy drop vs the
                parent.
            instance_auc_z: Gate, instance branch: how many of its spreads the loss attack's
                AUC (forgotten vs unseen images) may lie from 0.5; a retrain stays within 2.576
                99% of the time.
            instance_auc_one_sided: Gate, instance branch: fail only a result still more
                familiar than unseen images; for requests of mislabelled or poisoned images,
                which a retrain makes stranger than unseen ones.
            instance_method: Instance branch: match (behave on the images like a retrain),
                relabel (move them to the model's runner-up class: for mislabelled images)
                or l2ul (push them off their labels).
            instance_max_steps: Instance branch, match: cap on steps.
            instance_ablation: Instance branch, l2ul: adv+imp, adv or naive.
            instance_max_epochs: Instance branch, l2ul and relabel: cap on epochs over the
                request.
            instance_max_seconds: Instance branch: wall-clock budget on the method's steps
                (0: none); the step under way when it runs out is the last, and the version
                records deadline_hit. The gates judge the result as any other.
            shadows_uri: Instance branch: the original's shadow models (`oblivio pool
                shadows`, directory or s3:// URI; empty: none). match aims each image at what
                the shadows that never saw it do on it, and the evaluation judges the request
                image by image against them: promotion holds the version to that verdict.
            relearn_steps: Evaluation, forgotten classes: also fine-tune the original and the
                unlearned model on 64 forgotten images for up to this many steps and report
                when the class comes back (0: off; a few seconds a model on a GPU).
            promote: Make the new version champion when the gates pass.
            deletion_batch: Id of the deletion batch this run honours (empty for none): a
                version registered under it already is returned, never made twice.
            batch_hold: The deletion batch's claim (set by the deletion batch pipeline; empty
                for none): the steps that run the model renew its lease while they work.
            device: cpu, cuda or auto.
            shards: Tasks that the capture of each sample list and the evaluation's pass over
                the training split each spread over (1 to 256; at most 16 run at once); the
                parts are added up in order, so any count gives the same result.
            gpu_count: GPUs (nvidia.com/gpu) for the steps that run the model, e.g. "1".
            compute_cpu: CPU request of the steps that run the model (the others ask for 1).
            compute_memory: Memory request of the steps that run the model (the others 2Gi).
            node_selector: Node selector for every step, e.g. {"nvidia.com/gpu.present":
                "true"}.
            tolerations: Tolerations for every step, a list of Kubernetes toleration objects.
            secret_name: Kubernetes secret with MLflow and S3 credentials.
        """
        job_id, job_name = dsl.PIPELINE_JOB_ID_PLACEHOLDER, dsl.PIPELINE_JOB_NAME_PLACEHOLDER
        cluster = {"on_cluster": on_cluster, "secret_name": secret_name,
                   "node_selector": node_selector, "tolerations": tolerations,
                   "compute_cpu": compute_cpu, "compute_memory": compute_memory}
        outcome = _configure(record_outcome(job_id=job_id, deletion_batch=deletion_batch),
                             **cluster)
        with dsl.ExitHandler(outcome, name="unlearn"):
            validated = _configure(validate_request(  # never retried: a retry cannot fix it
                model_uri=f"models:/{model_name}@{model_alias}", dataset_uri=dataset_uri,
                forget_classes=forget_classes, forget_ids_uri=forget_ids_uri,
                class_method=class_method, instance_method=instance_method,
                alpha_mode=alpha_mode, ratio_mode=ratio_mode, relearn_steps=relearn_steps,
                shards=shards, max_forget_acc=max_forget_acc, max_retain_drop=max_retain_drop,
                min_mia_efficacy=min_mia_efficacy,
                max_reestimated_forget_acc=max_reestimated_forget_acc,
                instance_max_test_drop=instance_max_test_drop, instance_auc_z=instance_auc_z,
                instance_max_seconds=instance_max_seconds, shadows_uri=shadows_uri), **cluster)
            validated.set_caching_options(False)  # the alias moves
            resolved = _configure(resolve_model(
                model_uri=f"models:/{model_name}@{model_alias}", job_id=job_id, job_name=job_name,
                deletion_batch=deletion_batch, dataset_uri=dataset_uri,
                forget_classes=forget_classes, forget_ids_uri=forget_ids_uri,
                class_method=class_method,
                alpha_mode=alpha_mode, ratio_mode=ratio_mode, seed=seed),
                **cluster, retries=3).after(validated)
            resolved.set_caching_options(False)  # the alias moves: always ask the registry
            model = resolved.outputs["model"]
            shard_list = _configure(plan_shards(shards=shards), **cluster).after(
                validated).output

            def evaluate_and_register(unlearned) -> None:
                with dsl.ParallelFor(shard_list, parallelism=PARALLEL_SHARDS) as shard:
                    predicted = _configure(predict_outputs(
                        original=model, unlearned=unlearned, dataset_uri=dataset_uri,
                        shard=shard, shards=shards, device=device, batch_hold=batch_hold),
                        **cluster, gpu_count=gpu_count, retries=2)
                evaluated = _configure(evaluate_model(
                    original=model, unlearned=unlearned,
                    original_train=dsl.Collected(predicted.outputs["original_outputs"]),
                    unlearned_train=dsl.Collected(predicted.outputs["unlearned_outputs"]),
                    dataset_uri=dataset_uri, forget_ids_uri=forget_ids_uri, device=device,
                    job_id=job_id, deletion_batch=deletion_batch,
                    relearn_steps=relearn_steps, batch_hold=batch_hold,
                    shadows_uri=shadows_uri), **cluster,
                    gpu_count=gpu_count, retries=2)
                registered = _configure(register_model(
                    unlearned=unlearned, report=evaluated.outputs["report"],
                    model_name=model_name, parent_version=resolved.outputs["Output"],
                    deletion_batch=deletion_batch, max_forget_acc=max_forget_acc,
                    max_retain_drop=max_retain_drop, min_mia_efficacy=min_mia_efficacy,
                    max_reestimated_forget_acc=max_reestimated_forget_acc,
                    instance_max_test_drop=instance_max_test_drop, instance_auc_z=instance_auc_z,
                    instance_auc_one_sided=instance_auc_one_sided, promote=promote,
                    job_id=job_id, job_name=job_name), **cluster)
                registered.set_caching_options(False)  # never skip a registration

            samples = _configure(sample_data(
                model=model, dataset_uri=dataset_uri, forget_classes=forget_classes,
                forget_ids_uri=forget_ids_uri, retain_per_class=retain_per_class,
                forget_samples=forget_samples, val_per_class=val_per_class,
                val_forget_samples=val_forget_samples, seed=seed, job_id=job_id,
                deletion_batch=deletion_batch),
                **cluster, retries=3).outputs["samples"]
            with dsl.If(forget_ids_uri == "", name="classes"):
                stats = {}
                for which in ("retain", "forget"):
                    with dsl.ParallelFor(shard_list, parallelism=PARALLEL_SHARDS) as shard:
                        part = _configure(capture_activations(
                            model=model, dataset_uri=dataset_uri, samples=samples, which=which,
                            shard=shard, shards=shards, device=device,
                            batch_hold=batch_hold), **cluster,
                            gpu_count=gpu_count, retries=2).set_display_name(f"capture {which}")
                    stats[which] = _configure(merge_statistics(
                        parts=dsl.Collected(part.outputs["statistics"])),
                        **cluster).set_display_name(f"merge {which}").outputs["statistics"]
                retain_stats, forget_stats = stats["retain"], stats["forget"]
                with dsl.If(class_method == "contrast", name="contrast"):
                    contrasted = _configure(apply_contrast(
                        model=model, dataset_uri=dataset_uri, retain_statistics=retain_stats,
                        forget_statistics=forget_stats, samples=samples, ratio_mode=ratio_mode,
                        ratio=ratio, rounds=rounds, blocks=blocks, forget_target=forget_target,
                        device=device, batch_hold=batch_hold), **cluster, gpu_count=gpu_count)
                    evaluate_and_register(contrasted.outputs["unlearned"])
                with dsl.Else(name="projection"):
                    subspaces = _configure(compute_subspaces(  # CPU: eigh of small matrices
                        retain_statistics=retain_stats, forget_statistics=forget_stats),
                        **cluster)
                    projected = _configure(apply_projection(
                        model=model, dataset_uri=dataset_uri,
                        subspaces=subspaces.outputs["subspaces"], samples=samples,
                        alpha_mode=alpha_mode, alpha_r=alpha_r, alpha_f=alpha_f,
                        forget_target=forget_target, device=device, batch_hold=batch_hold),
                        **cluster, gpu_count=gpu_count)
                    evaluate_and_register(projected.outputs["unlearned"])
            with dsl.Else(name="instances"):
                forgot = _configure(unlearn_instances(
                    model=model, dataset_uri=dataset_uri, samples=samples,
                    method=instance_method, max_steps=instance_max_steps,
                    ablation=instance_ablation, max_epochs=instance_max_epochs, seed=seed,
                    device=device, batch_hold=batch_hold, shadows_uri=shadows_uri,
                    max_seconds=instance_max_seconds), **cluster,
                    gpu_count=gpu_count)
                evaluate_and_register(forgot.outputs["unlearned"])

    return unlearning_pipeline


unlearning_pipeline = make_unlearning_pipeline()

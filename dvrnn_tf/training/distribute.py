"""tf.distribute for a training run: the strategy named by `--strategy`, and who writes what.

* ``default``: no distribution (one device; `tf.distribute.get_strategy()`).
* ``mirrored``: `tf.distribute.MirroredStrategy` over the local GPUs, or, with none, over the
  CPU's logical devices (`--num_cpu_devices=N` splits the CPU into N, for testing).
* ``multi_worker``: `tf.distribute.MultiWorkerMirroredStrategy` from the `TF_CONFIG`
  environment variable (cluster and this task); every worker runs the same command.
* ``tpu``: `tf.distribute.TPUStrategy` on the TPU that `TPUClusterResolver` finds
  (`--tpu=<name or grpc://address>`, else `$TPU_NAME`, else the local TPU VM).

Batch size: `--batch_size` is the *global* batch, split evenly across replicas (each of R
replicas computes its loss on batch_size / R sequences; `LatentVariableModel.train_step`
divides it by R and the optimizer sums the replicas' gradients, so the update is that of one
batch of batch_size). Keep the learning rate when adding replicas at a fixed global batch.

Outputs: only the chief (task `chief`, or `worker` 0 when the cluster has no chief) writes
the run directory. Other workers run the same steps (saving involves every replica) into a
temporary directory that is removed at the end, as the Keras multi-worker guide does for
ModelCheckpoint and BackupAndRestore; they restore from the chief's backup, so a restarted
cluster resumes where the chief's run directory says.
"""
from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import tempfile

from absl import logging

from dvrnn_tf.training.config import STRATEGIES


class StrategyError(ValueError):
    """A strategy that cannot be had here; the message says why and what to do."""


def configure_cpu_devices(n: int) -> None:
    """Split the first physical CPU into `n` logical devices (n <= 1: leave it alone).

    Must run before TensorFlow initializes its devices (before the first op in the process).
    """
    if n <= 1:
        return
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    config = [tf.config.LogicalDeviceConfiguration() for _ in range(n)]
    try:
        tf.config.set_logical_device_configuration(cpu, config)
    except RuntimeError:
        have = len(tf.config.list_logical_devices("CPU"))
        if have != n:
            raise StrategyError(
                f"--num_cpu_devices={n}: TensorFlow has already initialized its devices "
                f"({have} logical CPU device(s)); logical devices can only be configured "
                "before the first TensorFlow op: run training in a fresh process "
                "(python -m dvrnn_tf.train ...).") from None


def make_strategy(config):
    """The `tf.distribute.Strategy` for `config.strategy` (devices configured first)."""
    import tensorflow as tf

    name = config.strategy
    configure_cpu_devices(config.num_cpu_devices)
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if tf.config.list_logical_devices("GPU"):
            return tf.distribute.MirroredStrategy()
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        if len(cpus) < 2:
            logging.warning("--strategy=mirrored on one CPU device: one replica "
                            "(--num_cpu_devices=N splits the CPU into N devices)")
        return tf.distribute.MirroredStrategy(
            devices=cpus, cross_device_ops=tf.distribute.ReductionToOneDevice())
    if name == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            logging.warning("--strategy=multi_worker without TF_CONFIG: a cluster of one worker")
        try:
            return tf.distribute.MultiWorkerMirroredStrategy()
        except (ValueError, KeyError, json.JSONDecodeError) as e:
            raise StrategyError(f"--strategy=multi_worker: TF_CONFIG is not usable: {e}") from e
    if name == "tpu":
        return _tpu_strategy(config)
    raise StrategyError(f"--strategy={name!r} is not allowed; allowed: {', '.join(STRATEGIES)}")


def _tpu_strategy(config):
    import tensorflow as tf

    tpu = config.tpu or os.environ.get("TPU_NAME") or "local"
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        if tpu != "local":
            tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StrategyError(
            f"--strategy=tpu: no TPU could be reached (TPUClusterResolver(tpu={tpu!r}): "
            f"{first_line}). Run on a Cloud TPU VM, or pass --tpu=<TPU name or "
            "grpc://host:port> (or set $TPU_NAME); on CPUs and GPUs use --strategy=default, "
            "mirrored or multi_worker.") from None


def is_chief(strategy) -> bool:
    """Whether this task writes the run directory (always, unless multi-worker)."""
    resolver = getattr(strategy.extended, "_cluster_resolver", None) or getattr(
        strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and not has_chief


def task_name(strategy) -> str:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return "chief"
    return f"{resolver.task_type}-{resolver.task_id}"


@contextlib.contextmanager
def task_run_dir(config, strategy, run):
    """The `RunDir` this task writes, with `config.mixed_precision` as the dtype policy.

    The chief writes `run`; another worker a temporary directory, removed on exit.
    """
    with precision_policy(config.mixed_precision):
        if is_chief(strategy):
            yield run
            return
        tmp = tempfile.mkdtemp(prefix=f"dvrnn_{task_name(strategy)}_")
        try:
            yield type(run)(pathlib.Path(tmp))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def precision_policy(name: str):
    """Sets keras's global dtype policy for the block ("none": leave float32), then restores
    it (the policy is process-wide: a library call must not leak it)."""
    import keras

    if name in ("none", "", None):
        yield
        return
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def backup_callback(cls, write_dir, read_dir, **kwargs):
    """`cls(write_dir)`, a backup-and-restore callback, restoring from `read_dir` instead
    when the two differ (a non-chief worker: it writes its own temporary backup but resumes
    from the chief's, so that every worker starts from the same epoch)."""
    if pathlib.Path(write_dir) == pathlib.Path(read_dir):
        return cls(str(write_dir), **kwargs)

    class RestoreFromChief(cls):
        def on_train_begin(self, logs=None):
            own, self.backup_dir = self.backup_dir, pathlib.Path(read_dir)
            try:
                super().on_train_begin(logs)
            finally:
                self.backup_dir = own
                own.mkdir(parents=True, exist_ok=True)

    return RestoreFromChief(str(write_dir), **kwargs)

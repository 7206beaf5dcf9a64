"""Run by tests/test_distribute.py in a fresh process (logical devices and TF_CONFIG must be
set before TensorFlow starts): trains tiny models and prints what the test checks, as JSON.

    python tests/distribute_worker.py '{"config": {...}, "runs": {"name": {overrides}},
                                        "out": "/dir"}'

Each run trains `TrainConfig(**config, **overrides)` with `dvrnn_tf.training.train` and
records the loss per epoch, the replicas in sync and the final trainable weights (saved to
`<out>/<name>-<task>.npz`).
"""
import json
import os
import sys


def main():
    args = json.loads(sys.argv[1])
    import keras
    keras.config.disable_traceback_filtering()
    import numpy as np

    from dvrnn_tf.training import TrainConfig, train

    class Record(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.losses = []

        def on_epoch_end(self, epoch, logs=None):
            self.losses.append(float(logs["loss"]))

        def on_train_end(self, logs=None):
            self.replicas = int(self.model.distribute_strategy.num_replicas_in_sync)
            self.steps = int(self.model.optimizer.iterations.numpy())
            self.weights = [np.asarray(w.numpy()) for w in self.model.trainable_weights]

    task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
    task_name = f"{task.get('type', 'local')}{task.get('index', '')}"
    results = {}
    for name, overrides in args["runs"].items():
        record = Record()
        payload = train(TrainConfig(**{**args["config"], **overrides}), callbacks=[record],
                        verbose=0)
        weights = os.path.join(args["out"], f"{name}-{task_name}.npz")
        np.savez(weights, *record.weights)
        results[name] = {"losses": record.losses, "replicas": record.replicas,
                         "steps": record.steps, "weights": weights,
                         "held_out_loss": payload["per_image_nats"]["loss"],
                         "policy": keras.mixed_precision.global_policy().name}
    print("RESULTS " + json.dumps(results), flush=True)


if __name__ == "__main__":
    main()

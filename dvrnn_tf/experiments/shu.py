"""The second paper's experiments (DESIGN 3):

  python -m dvrnn_tf.experiments.shu --experiment=bias --run_dir=runs/shu \
      --dataset=mnist --manual_dir=../shared/data/mnist --seed=0

--experiment: bias | regression | layer_split | competition | win_rates. Figures (PNG) and
JSON go to --run_dir. `win_rates` runs the competitions (and regressions) of --seeds seeds
(0..seeds-1 from --seed), resumably, and writes win_rates.json there and the table to
--markdown (default docs/win_rates.md). Grids are judged by the cached CNN judge of the data
set (`dvrnn_tf.metrics.judge`, trained on first use).
"""
import os
import shlex
import sys

from dvrnn_tf.console import quiet_tensorflow  # noqa: E402

quiet_tensorflow()  # before TensorFlow loads; DVRNN_TF_LOGS=1 shows its own log

from absl import app, flags, logging  # noqa: E402

from dvrnn_tf.experiments.framework import Settings  # noqa: E402

EXPERIMENTS = ("bias", "regression", "layer_split", "competition", "win_rates")
_DEFAULTS = Settings()

flags.DEFINE_enum("experiment", None, list(EXPERIMENTS), "Which experiment to run.")
flags.DEFINE_string("run_dir", "runs/shu", "Where figures and JSON go.")
flags.DEFINE_integer("seed", 0, "Seed (the first seed for win_rates).", lower_bound=0)
flags.DEFINE_integer("seeds", 20, "win_rates: number of seeds.", lower_bound=1)
flags.DEFINE_string("markdown", "docs/win_rates.md", "win_rates: where the table goes.")
flags.DEFINE_list("conditions", ["standard", "masked", "encoder_split", "decoder_split"],
                  "competition / win_rates: the conditions to run.")
flags.DEFINE_list("transforms", ["rotation", "reflection"],
                  "competition / win_rates: the label-dependent transforms.")
flags.DEFINE_bool("regression_in_win_rates", True, "win_rates: also the regression per seed.")
flags.DEFINE_string("judge_dir", "", "Where cached judges live (default: the judge's own).")
flags.DEFINE_string("dataset", _DEFAULTS.dataset, "Data set (`mnist`, `digits`, a tfds name).")
flags.DEFINE_string("data_dir", _DEFAULTS.data_dir, "tfds data directory.")
flags.DEFINE_string("manual_dir", _DEFAULTS.manual_dir, "Folder with the original files.")
flags.DEFINE_integer("hidden_dim", _DEFAULTS.hidden_dim, "CVAE hidden width.", lower_bound=1)
flags.DEFINE_integer("z_dim", _DEFAULTS.z_dim, "CVAE latent size.", lower_bound=1)
flags.DEFINE_integer("num_hidden", _DEFAULTS.num_hidden, "Hidden layers per network.",
                     lower_bound=0)
flags.DEFINE_bool("label_every_layer", _DEFAULTS.label_every_layer,
                  "onehot(y) into every CVAE layer (else only the first).")
flags.DEFINE_integer("steps", _DEFAULTS.steps, "Training steps per CVAE.", lower_bound=1)
flags.DEFINE_integer("batch_size", _DEFAULTS.batch_size, "Images per step.", lower_bound=1)
flags.DEFINE_float("learning_rate", _DEFAULTS.learning_rate, "Adam learning rate.")
flags.DEFINE_integer("num_styles", _DEFAULTS.num_styles, "Grid columns (prior samples).",
                     lower_bound=2)
flags.DEFINE_integer("morph_scale", _DEFAULTS.morph_scale, "Morphometrics upscaling.",
                     lower_bound=1)
flags.DEFINE_integer("regression_steps", _DEFAULTS.regression_steps,
                     "Steps of each regression.", lower_bound=1)
flags.DEFINE_integer("regression_images", _DEFAULTS.regression_images,
                     "Training images of the regressions.", lower_bound=1)
flags.DEFINE_integer("max_train_images", _DEFAULTS.max_train_images,
                     "Use only the first N training images (0: all).", lower_bound=0)

FLAGS = flags.FLAGS


def settings_from_flags() -> Settings:
    import dataclasses
    return Settings(**{f.name: FLAGS[f.name].value for f in dataclasses.fields(Settings)})


def main(argv):
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.experiment is None:
        raise app.UsageError(f"--experiment is required: one of {', '.join(EXPERIMENTS)}")
    from dvrnn_tf.experiments import framework, grid_experiments, regression, win_rates
    from dvrnn_tf.metrics.judge import load_or_train_judge

    settings = settings_from_flags()
    out = os.path.abspath(FLAGS.run_dir)
    os.makedirs(out, exist_ok=True)
    data = framework.load_data(settings)
    judge, info = load_or_train_judge(settings.dataset, seed=0, judge_dir=FLAGS.judge_dir or None,
                                      data_dir=settings.data_dir or None,
                                      manual_dir=settings.manual_dir or None)
    print(f"judge: {info.get('path')} (test accuracy {info.get('test_accuracy')})")
    seed = FLAGS.seed
    if FLAGS.experiment == "bias":
        result = grid_experiments.bias(settings, seed, judge, out, data=data)
        for name, run in result["runs"].items():
            print(f"{name:14s} {framework._score_line(run['score'])}")
    elif FLAGS.experiment == "layer_split":
        result = grid_experiments.layer_split(settings, seed, judge, out, data=data)
        for group in ("encoder_split", "decoder_split"):
            for name, run in result[group].items():
                print(f"{group} {name:12s} {framework._score_line(run['score'])}")
    elif FLAGS.experiment == "competition":
        result = grid_experiments.competition(settings, seed, judge, out, data=data,
                                              conditions=FLAGS.conditions,
                                              transforms=FLAGS.transforms)
        for name, run in result["runs"].items():
            print(f"{name:26s} winner {run['winner']:8s} ({run['cpu_seconds']:.0f} CPU s)")
    elif FLAGS.experiment == "regression":
        result = regression.regression(settings, seed, out_dir=out, data=data, judge=judge)
        if result["base_model_score"] is not None:
            print(f"base model: {framework._score_line(result['base_model_score'])}")
        for kind in ("encoder", "decoder"):
            print(f"{kind}: steps to the common loss: disentangled "
                  f"{result[kind]['steps_disentangled']}, entangled "
                  f"{result[kind]['steps_entangled']}, ratio {result[kind]['ratio']}")
    else:
        seeds = list(range(seed, seed + FLAGS.seeds))
        result = win_rates.run_all(settings, seeds, out, judge, data=data,
                                   conditions=FLAGS.conditions, transforms=FLAGS.transforms,
                                   regression=FLAGS.regression_in_win_rates)
        command = "python -m dvrnn_tf.experiments.shu " + " ".join(
            shlex.quote(a) for a in sys.argv[1:])
        path = win_rates.write(result, out, FLAGS.markdown or None, command)
        print(win_rates.markdown(result))
        print(f"table: {path}; JSON: {os.path.join(out, 'win_rates.json')}")
    print(f"outputs in {out}")
    return 0


if __name__ == "__main__":
    app.run(main)

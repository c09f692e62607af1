"""End-to-end tests of the launchers in subprocesses: outputs, resume, strategies, bad input.

Each run uses the embedded Fashion-MNIST subset (found via a --data_dir that points at it, so a
full copy on the machine does not change the test) and a tiny model for a few steps.
"""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time

from absl.testing import parameterized
import keras
import numpy as np
import tensorflow as tf

from deform_tf import model_io
from deform_tf import models
from experiments import settings as settings_lib
from experiments import training as train_lib
from pipelines import idx
from pipelines import labels as labels_lib
from pipelines import mnist

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--dataset=fashion_mnist", f"--data_dir={idx.EMBEDDED_FASHION_MNIST_DIR}",
        "--width=0.0625", "--batch_size=16", "--learning_rate=0.02", "--warmup_epochs=0",
        "--num_measure_images=8", "--log_every=2", "--max_train_examples=256"]


def run_launcher(module, args, env=None, timeout=300):
    full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env or {}))
    return subprocess.run([sys.executable, "-m", module] + args, cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def event_tags(directory):
    tags = set()
    for name in tf.io.gfile.listdir(directory):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(directory, name)):
            tags.update(value.tag for value in event.summary.value)
    return tags


def checkpoint_weights(prefix):
    """{name: array} of every weight of the model in checkpoint `prefix` (trainable or not).

    A checkpoint of model and optimizer stores each variable once: a Keras 3 model's trainable
    variables under the optimizer's `_trainable_variables`, only the batch-norm moving statistics
    under `model/`.
    """
    reader = tf.train.load_checkpoint(prefix)
    names = sorted(n for n in reader.get_variable_to_shape_map()
                   if n.startswith(("model/", "optimizer/_trainable_variables/")))
    return {n: reader.get_tensor(n) for n in names}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AllocatorDefaultTest(parameterized.TestCase):

    @parameterized.parameters((None, "true"), ("false", "false"), ("true", "true"))
    def test_launch_package_pools_cpu_memory_unless_told_otherwise(self, given, expected):
        env = {k: v for k, v in os.environ.items() if k != "TF_CPU_ALLOCATOR_USE_BFC"}
        if given is not None:
            env["TF_CPU_ALLOCATOR_USE_BFC"] = given
        out = subprocess.run(
            [sys.executable, "-c",
             "import os, launch; print(os.environ['TF_CPU_ALLOCATOR_USE_BFC'])"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=True)
        self.assertEqual(out.stdout.strip(), expected)


class TrainingDefaultsTest(tf.test.TestCase):
    """The hyperparameters the launchers' docstrings document (`experiments.settings.PRESETS`)."""

    def test_documented_defaults(self):
        settings = {name: settings_lib.default_settings(name) for name in settings_lib.PRESETS}
        documented = {"cifar10": (128, 0.05, 1.0, 5e-4), "imagenet": (256, 0.1, 5.0, 1e-4),
                      "synthetic_mnist": (128, 0.05, None, 5e-4), "train": (128, 0.05, None, 5e-4)}
        self.assertCountEqual(settings, documented)
        for experiment, (batch, peak, warmup_epochs, weight_decay) in documented.items():
            self.assertEqual(
                {k: settings[experiment][k] for k in (
                    "optimizer", "momentum", "schedule", "batch_size", "learning_rate",
                    "warmup_epochs", "weight_decay", "label_smoothing")},
                dict(optimizer="sgd", momentum=0.9, schedule="cosine", batch_size=batch,
                     learning_rate=peak, warmup_epochs=warmup_epochs,
                     weight_decay=weight_decay, label_smoothing=0.0), msg=experiment)
            optimizer, _ = train_lib.make_optimizer(
                self._config(learning_rate=peak, weight_decay=weight_decay))
            self.assertIsInstance(optimizer, keras.optimizers.SGD)
            self.assertAllClose(float(optimizer.momentum), 0.9)
            self.assertFalse(optimizer.nesterov)
            self.assertAllClose(float(optimizer.weight_decay), weight_decay)

    def test_every_setting_is_a_flag_with_its_default(self):
        # In a subprocess: launch.common's flags would clash with launch.demo's in this one.
        script = ("import json\nfrom absl import flags\nfrom launch import common\n"
                  "print(json.dumps({n: flags.FLAGS[n].default for n in common.SETTINGS "
                  "if n in flags.FLAGS}))")
        out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                             text=True, timeout=120, check=True)
        defaults = json.loads(out.stdout.splitlines()[-1])
        # `model` is launch.train's own flag (launch.evaluate's --model is a path).
        self.assertEqual(set(settings_lib.DEFAULTS) - set(defaults), {"model"})
        self.assertEqual(defaults, {n: v for n, v in settings_lib.DEFAULTS.items()
                                    if n != "model"})

    def _config(self, **fields):
        fields = dict(dict(train_steps=1000, warmup_steps=100), **fields)
        return train_lib.TrainConfig(
            experiment="defaults", model="vgg_mnist_max_pool", dataset="fashion_mnist",
            model_options={"width": 0.0625}, input_shape=(32, 32, 1), num_classes=10, seed=0,
            batch_size=16, **fields)

    def test_warmup_then_cosine_schedule_at_its_key_steps(self):
        _, schedule = train_lib.make_optimizer(
            self._config(learning_rate=0.4))
        # Linear warmup over steps 0..99 reaching the peak, then cosine from 100 to 1000.
        for step, expected in ((0, 0.4 / 100), (49, 0.4 * 50 / 100), (99, 0.4), (100, 0.4),
                               (550, 0.2), (775, 0.2 * (1 + np.cos(np.pi * 0.75))),
                               (1000, 0.0)):
            self.assertAllClose(float(schedule(step)), expected, atol=1e-7, msg=str(step))

    def test_weight_decay_shrinks_kernels_only_not_batch_norm_or_biases(self):
        config = self._config(learning_rate=0.5, weight_decay=0.1, warmup_steps=0)
        model = train_lib.build_model(config)
        optimizer, schedule = train_lib.make_optimizer(
            config)
        before = [v.numpy() for v in model.trainable_variables]
        optimizer.apply_gradients(
            [(tf.zeros_like(v), v) for v in model.trainable_variables])  # only decay moves
        shrink = 1 - 0.1 * float(schedule(0))
        kinds = set()
        for variable, old in zip(model.trainable_variables, before):
            kind = variable.path.split("/")[-1]
            kinds.add(kind)
            expected = old * shrink if kind == "kernel" else old
            self.assertAllClose(variable.numpy(), expected, rtol=1e-6, msg=variable.path)
        self.assertEqual(kinds, {"kernel", "bias", "gamma", "beta"})


class TrainingAccuracyTest(tf.test.TestCase):

    def test_random_label_run_records_its_fit_on_the_labels_it_trained_on(self):
        # The launcher runs in a subprocess: launch.common's flags would clash with
        # launch.demo's in one test process.
        out = os.path.join(self.get_temp_dir(), "random")
        result = run_launcher("launch.cifar10", TINY + [
            "--max_train_examples=48", "--train_steps=3", "--seed=5", "--random_labels",
            "--checkpoint_every=3", f"--output_dir={out}"])
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        with open(os.path.join(out, "final.json")) as f:
            final = json.load(f)
        # Oracle: the trained model's predictions on the first 48 training images (file order,
        # normalized as the test images are, no augmentation) against the labels
        # pipelines.labels draws for seed 5, computed here in numpy.
        images, _ = mnist.load_arrays("train", "fashion_mnist", idx.EMBEDDED_FASHION_MNIST_DIR,
                                      max_examples=48)
        labels = labels_lib.random_label_array(48, 10, 5)
        model = model_io.load_model(os.path.join(out, "checkpoints", "ckpt-3"))
        logits = model(mnist.normalize(images), training=False)
        self.assertEqual(final["train_examples"], 48)
        self.assertAllClose(final["train_accuracy"],
                            np.mean(np.argmax(logits, axis=1) == labels), atol=1e-6)
        self.assertIn("accuracy", final)  # the test set's, as before


class LauncherTest(parameterized.TestCase, tf.test.TestCase):

    def test_cifar10_launcher_writes_everything(self):
        out = os.path.join(self.get_temp_dir(), "run")
        result = run_launcher("launch.cifar10", TINY + [
            f"--output_dir={out}", "--train_steps=6", "--measure_every=3",
            "--checkpoint_every=3", "--train_strength=1.5"])
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        for name in ("config.json", "flags.txt", "metrics.csv", "measurements.json",
                     "final.json", "checkpoints/model_config.json", "checkpoints/ckpt-6.index"):
            self.assertTrue(os.path.exists(os.path.join(out, name)), name)
        with open(os.path.join(out, "measurements.json")) as f:
            measurements = json.load(f)
        self.assertEqual([m["step"] for m in measurements], [0, 3, 6])
        self.assertLen(measurements[0]["sensitivity_cosine"]["sensitivity"], 13)
        with open(os.path.join(out, "metrics.csv")) as f:
            self.assertEqual([int(r["step"]) for r in csv.DictReader(f)], [2, 3, 4, 6])
        with open(os.path.join(out, "config.json")) as f:
            config = json.load(f)
        self.assertEqual(config["data"]["train_strength"], 1.5)
        self.assertEqual(config["model"], "vgg_mnist_max_pool")
        tags = event_tags(os.path.join(out, "summaries"))
        for tag in ("train/loss", "train/accuracy", "train/learning_rate",
                    "sensitivity_cosine/00_input", "sensitivity_euclidean/12_block4_down",
                    "relative_stability/01_block1_relu1", "smoothness/mean",
                    "kernels/block1_conv1", "data/clean_vs_deformed", "eval/accuracy"):
            self.assertIn(tag, tags)
        self.assertIn("step 6/6", result.stderr)
        self.assertRegex(result.stderr, r"Finished: step 6, examples_per_sec [0-9.e+]+, loss ")
        self.assertNotIn("np.float", result.stderr)
        self.assertEqual(result.stderr.count("Reading Fashion-MNIST from"), 1)  # both splits

    def test_synthetic_and_imagenet_launchers_run(self):
        out = os.path.join(self.get_temp_dir(), "synthetic")
        result = run_launcher("launch.synthetic_mnist", [
            f"--output_dir={out}", "--width=0.0625", "--batch_size=16", "--train_steps=2",
            "--synthetic_strength=2", "--num_measure_images=8", f"--data_dir="
            f"{idx.EMBEDDED_FASHION_MNIST_DIR}"])
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        with open(os.path.join(out, "final.json")) as f:
            self.assertEqual(json.load(f)["num_examples"], 1000)
        out = os.path.join(self.get_temp_dir(), "imagenet")
        result = run_launcher("launch.imagenet", TINY + [
            f"--output_dir={out}", "--architecture=imagenet", "--train_steps=2",
            "--eval_grid_size=3", "--eval_strength=2"])
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        with open(os.path.join(out, "measurements.json")) as f:
            self.assertLen(json.load(f)[0]["sensitivity_cosine"]["layers"], 19)

    def test_kill_and_resume_ends_like_an_uninterrupted_run(self):
        args = TINY + ["--train_steps=40", "--checkpoint_every=4", "--deterministic",
                       "--seed=3", "--train_strength=1.0"]
        reference = os.path.join(self.get_temp_dir(), "reference")
        result = run_launcher("launch.cifar10", args + [f"--output_dir={reference}"])
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])

        killed = os.path.join(self.get_temp_dir(), "killed")
        command = [sys.executable, "-m", "launch.cifar10"] + args + [f"--output_dir={killed}"]
        process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        marker = os.path.join(killed, "checkpoints", "ckpt-8.index")
        deadline = time.time() + 240
        while not os.path.exists(marker) and time.time() < deadline and process.poll() is None:
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait()
        self.assertFalse(os.path.exists(os.path.join(killed, "final.json")),
                         "the run finished before it could be killed")
        result = run_launcher("launch.cifar10", args + [f"--output_dir={killed}"])
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        self.assertIn("Resumed from", result.stderr)
        expected = checkpoint_weights(os.path.join(reference, "checkpoints", "ckpt-40"))
        got = checkpoint_weights(os.path.join(killed, "checkpoints", "ckpt-40"))
        self.assertEqual(sorted(got), sorted(expected))
        for name in expected:
            self.assertAllEqual(got[name], expected[name], msg=name)
        with open(os.path.join(killed, "metrics.csv")) as f:
            steps = [int(r["step"]) for r in csv.DictReader(f)]
        self.assertEqual(steps, sorted(set(steps)))  # no duplicated rows after the resume

    def test_mirrored_on_two_logical_devices_matches_one_device(self):
        losses = {}
        for name, extra in (("one", []), ("two", ["--strategy=mirrored",
                                                  "--num_logical_devices=2"])):
            out = os.path.join(self.get_temp_dir(), f"mirrored_{name}")
            result = run_launcher("launch.cifar10", TINY + [
                f"--output_dir={out}", "--train_steps=8", "--seed=5", "--deterministic"] + extra)
            self.assertEqual(result.returncode, 0, result.stderr[-3000:])
            with open(os.path.join(out, "metrics.csv")) as f:
                losses[name] = np.array([float(r["loss"]) for r in csv.DictReader(f)])
        # Synchronized batch norm: the same computation up to float summation order, whose
        # differences grow slowly with training.
        self.assertAllClose(losses["two"][0], losses["one"][0], rtol=1e-5)
        self.assertAllClose(losses["two"], losses["one"], rtol=1e-2)

    def test_two_workers_on_loopback_end_with_identical_weights(self):
        ports = [free_port(), free_port()]
        cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
        out = os.path.join(self.get_temp_dir(), "multi_worker")
        processes = []
        for index in range(2):
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_CONFIG=json.dumps(
                {"cluster": cluster, "task": {"type": "worker", "index": index}}))
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "launch.cifar10"] + TINY + [
                    f"--output_dir={out}", "--train_steps=4", "--checkpoint_every=4",
                    "--strategy=multi_worker_mirrored"],
                cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        outputs = [p.communicate(timeout=900)[0] for p in processes]
        for process, output in zip(processes, outputs):
            self.assertEqual(process.returncode, 0, output[-3000:])
        chief = checkpoint_weights(os.path.join(out, "checkpoints", "ckpt-4"))
        worker = checkpoint_weights(os.path.join(out, "checkpoints", "worker-1", "ckpt-4"))
        self.assertNotEmpty(chief)
        for name in chief:
            self.assertAllClose(worker[name], chief[name], atol=1e-6, msg=name)

    @parameterized.named_parameters(
        ("unknown_variant", ["--downsampling=pooling"], "downsampling"),
        ("negative_lr", ["--learning_rate=-1"], "learning_rate"),
        ("missing_flagfile", ["--flagfile=/nonexistent/x.cfg"], "flagfile"),
        ("steps_and_epochs", ["--train_steps=3", "--epochs=1"], "not both"),
        ("missing_data", ["--dataset=cifar10", "--data_dir=/nonexistent/cifar",
                          "--train_steps=3"], "/nonexistent/cifar"),
        ("xla_with_two_replicas", ["--strategy=mirrored", "--num_logical_devices=2", "--xla",
                                   "--train_steps=3"], "--xla"),
        ("grid_of_one_point", ["--eval_grid_size=1"], "--eval_grid_size must be >= 2"),
        ("batch_not_divisible_by_replicas", ["--strategy=mirrored", "--num_logical_devices=2",
                                             "--batch_size=15", "--train_steps=3"],
         "divisible by the 2 replicas"),
    )
    def test_bad_input_exits_2_with_one_message_before_writing(self, args, word):
        out = os.path.join(self.get_temp_dir(), "bad", self.id())
        result = run_launcher("launch.cifar10", TINY + [f"--output_dir={out}"] + args)
        self.assertEqual(result.returncode, 2, result.stderr[-3000:])
        self.assertIn(word, result.stderr)
        self.assertNotIn("Traceback", result.stderr)
        self.assertFalse(os.path.exists(out), "nothing is written before the checks pass")

    def test_refuses_another_runs_directory_and_keeps_its_files(self):
        out = os.path.join(self.get_temp_dir(), "taken")
        os.makedirs(os.path.join(out, "checkpoints"))
        files = {"config.json": '{"experiment": "other"}', "checkpoints/checkpoint": "x"}
        for name, text in files.items():
            with open(os.path.join(out, name), "w") as f:
                f.write(text)
        result = run_launcher("launch.cifar10", TINY + [f"--output_dir={out}",
                                                        "--train_steps=2"])
        self.assertEqual(result.returncode, 2)
        self.assertIn("another run", result.stderr)
        for name, text in files.items():
            with open(os.path.join(out, name)) as f:
                self.assertEqual(f.read(), text)

    def test_corrupt_checkpoint_exits_2_and_keeps_files(self):
        out = os.path.join(self.get_temp_dir(), "corrupt")
        args = TINY + [f"--output_dir={out}", "--train_steps=2", "--checkpoint_every=2"]
        self.assertEqual(run_launcher("launch.cifar10", args).returncode, 0)
        os.remove(os.path.join(out, "final.json"))
        data_files = tf.io.gfile.glob(os.path.join(out, "checkpoints", "ckpt-2.data*"))
        with open(data_files[0], "wb") as f:
            f.write(b"garbage")
        before = {p: os.path.getsize(p) for p in tf.io.gfile.glob(os.path.join(out, "**"))}
        result = run_launcher("launch.cifar10", args)
        self.assertEqual(result.returncode, 2, result.stderr[-2000:])
        self.assertIn("ckpt-2", result.stderr)
        self.assertNotIn("Traceback", result.stderr)
        self.assertEqual({p: os.path.getsize(p) for p in before}, before)

    def test_evaluate_writes_json_for_checkpoint_and_fresh_init(self):
        out = os.path.join(self.get_temp_dir(), "to_evaluate")
        self.assertEqual(run_launcher("launch.cifar10", TINY + [
            f"--output_dir={out}", "--train_steps=2"]).returncode, 0)
        for model_args in ([f"--model={out}/checkpoints"], ["--downsampling=avg_pool"]):
            eval_dir = os.path.join(self.get_temp_dir(), "eval", str(len(model_args[0])))
            result = run_launcher("launch.evaluate", [
                f"--output_dir={eval_dir}", "--dataset=fashion_mnist", "--width=0.0625",
                f"--data_dir={idx.EMBEDDED_FASHION_MNIST_DIR}", "--num_measure_images=8"]
                + model_args)
            self.assertEqual(result.returncode, 0, result.stderr[-3000:])
            with open(os.path.join(eval_dir, "evaluation.json")) as f:
                evaluation = json.load(f)
            self.assertLen(evaluation["sensitivity_euclidean"]["sensitivity"], 13)
            self.assertLen(evaluation["smoothness"], 8)
        result = run_launcher("launch.evaluate", [f"--output_dir={eval_dir}",
                                                  "--model=/nonexistent.keras"])
        self.assertEqual(result.returncode, 2)
        self.assertIn("exists", result.stderr)


if __name__ == "__main__":
    tf.test.main()

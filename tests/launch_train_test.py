"""`python -m launch.train`: any registered model on any registered data set, run as a user does.

Each run trains a few steps on the embedded Fashion-MNIST subset (IDX files, the real format),
writes the run directory every launcher writes, and is then measured by `launch.evaluate` and
`launch.profile` from its directory. The measurement during training and `launch.evaluate` use
the same seed derivation (`deform_tf.deformation`): on the same images they must agree.
"""

import json
import os
import textwrap

import tensorflow as tf

from pipelines import idx
from tests.launch_test import run_launcher

DATA = [f"--data_dir={idx.EMBEDDED_FASHION_MNIST_DIR}", "--max_train_examples=64"]
SMALL = ["--train_steps=3", "--batch_size=16", "--num_measure_images=8", "--log_every=3",
         "--checkpoint_every=3"]
BUILDER = textwrap.dedent("""\
    import keras


    def build(input_shape, num_classes, seed=0, filters=4):
        inputs = keras.Input(input_shape)
        x = keras.layers.Conv2D(filters, 3, activation="relu", name="conv",
                                kernel_initializer=keras.initializers.HeNormal(seed))(inputs)
        x = keras.layers.MaxPooling2D(name="pool")(x)
        x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
        return keras.Model(inputs, keras.layers.Dense(num_classes, name="logits")(x))
    """)


def _json(path):
    with open(path) as f:
        return json.load(f)


class LaunchTrainTest(tf.test.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.root = tf.compat.v1.test.get_temp_dir()

    def _train(self, name, args, env=None):
        out = os.path.join(self.root, name)
        result = run_launcher("launch.train", args + DATA + SMALL + [f"--output_dir={out}"],
                              env=env, timeout=600)
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        final = _json(os.path.join(out, "final.json"))
        self.assertEqual(final["step"], 3)
        self.assertBetween(final["accuracy"], 0.0, 1.0)
        return out

    def test_lenet_trains_and_is_evaluated_with_the_same_deformation(self):
        out = self._train("lenet", ["--model=lenet", "--dataset=fashion_mnist"])
        config = _json(os.path.join(out, "config.json"))
        self.assertEqual((config["model"], config["dataset"]), ("lenet", "fashion_mnist"))
        self.assertEqual(config["input_shape"], [32, 32, 1])
        # Measured deformation sized to the 32-px images: the paper's CIFAR-10 setting.
        self.assertEqual((config["eval_grid_size"], config["eval_strength"]), (3, 2.0))
        measured = _json(os.path.join(out, "measurements.json"))
        self.assertEqual([m["step"] for m in measured], [0, 3])
        fields = _json(os.path.join(out, "checkpoints", "model_config.json"))
        self.assertEqual(fields["model"], "lenet")
        self.assertNotIn("vgg", fields)

        # launch.evaluate on the run directory: the run's data set, the last checkpoint, the
        # same 8 images and seed 0, so the same deformations and noise as the final measurement.
        evaluated = os.path.join(self.root, "lenet_eval")
        result = run_launcher("launch.evaluate", [
            f"--model={out}", f"--data_dir={idx.EMBEDDED_FASHION_MNIST_DIR}",
            "--num_measure_images=8", f"--output_dir={evaluated}"])
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        evaluation = _json(os.path.join(evaluated, "evaluation.json"))
        self.assertEqual(evaluation["dataset"], "fashion_mnist")
        self.assertTrue(evaluation["model"].endswith("ckpt-3"), evaluation["model"])
        for key, column in (("sensitivity_cosine", "sensitivity"),
                            ("relative_stability", "relative_stability")):
            self.assertEqual(evaluation[key]["layers"], measured[-1][key]["layers"])
            self.assertAllClose(evaluation[key][column], measured[-1][key][column], rtol=1e-5,
                                msg=key)

        # launch.profile on the run directory: the data set's normalization, its own images.
        profiled = os.path.join(self.root, "lenet_profile")
        result = run_launcher("launch.profile", [f"--model={out}", "--num_images=8",
                                                 f"--output_dir={profiled}"])
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        text = json.dumps(_json(os.path.join(profiled, "profile.json"))["settings"])
        self.assertIn("fashion_mnist_pipeline", text)
        self.assertIn("ckpt-3", text)

    def test_mobilenet_v2_gets_grayscale_as_rgb(self):
        out = self._train("mobilenet", ["--model=mobilenet_v2_035", "--dataset=fashion_mnist"])
        self.assertEqual(_json(os.path.join(out, "config.json"))["input_shape"], [32, 32, 3])
        self.assertEqual(_json(os.path.join(out, "config.json"))["data"]["channels"], 3)

    def test_fully_connected_net_has_no_filters_to_smooth(self):
        out = self._train("fc2", ["--model=fc2", "--dataset=fashion_mnist", "--width=16"])
        measured = _json(os.path.join(out, "measurements.json"))
        self.assertEqual([m["smoothness"] for m in measured], [[], []])
        self.assertEqual(measured[-1]["relative_stability"]["layers"],
                         ["input", "fc1_relu", "logits"])

    def test_user_builder_from_the_python_path(self):
        code = os.path.join(self.root, "code")
        os.makedirs(code, exist_ok=True)
        with open(os.path.join(code, "my_nets.py"), "w") as f:
            f.write(BUILDER)
        env = {"PYTHONPATH": code}
        out = self._train("builder", ["--model=my_nets:build", "--dataset=fashion_mnist"], env)
        self.assertEqual(_json(os.path.join(out, "checkpoints", "model_config.json"))["model"],
                         "my_nets:build")
        profiled = os.path.join(self.root, "builder_profile")
        result = run_launcher("launch.profile", [f"--model={out}", "--num_images=8",
                                                 f"--output_dir={profiled}"], env=env)
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        with open(os.path.join(profiled, "profile.csv")) as f:
            self.assertIn("logits", f.read())
        # Without the module on the path, the message says what to do.
        result = run_launcher("launch.profile", [f"--model={out}", "--num_images=8",
                                                 f"--output_dir={profiled}_2"])
        self.assertEqual(result.returncode, 2)
        self.assertIn("PYTHONPATH", result.stderr)

    def test_bad_model_and_settings_exit_2_with_the_flags_named(self):
        out = os.path.join(self.root, "bad")
        for args, message in (
                (["--model=nonet", "--dataset=fashion_mnist"], "choose one of vgg_cifar10"),
                (["--dataset=fashion_mnist"], "--model is required"),
                (["--model=lenet"], "--dataset is required"),
                (["--model=lenet", "--dataset=fashion_mnist", "--downsampling=strided"],
                 "--architecture and --downsampling"),
                (["--model=inception_v3", "--dataset=fashion_mnist"], "at least 75 x 75"),
                (["--model=fc2", "--dataset=fashion_mnist", "--random_labels",
                  "--dataset=synthetic"], "--random_labels does not apply")):
            result = run_launcher("launch.train", args + DATA + SMALL + [f"--output_dir={out}"])
            self.assertEqual(result.returncode, 2, (args, result.stderr[-2000:]))
            self.assertIn(message, result.stderr, args)
            self.assertNotIn("Traceback", result.stderr)
            self.assertFalse(os.path.exists(out), args)


if __name__ == "__main__":
    tf.test.main()

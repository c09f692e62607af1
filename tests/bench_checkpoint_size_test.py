"""Tests of `bench.checkpoint_size`'s measurements on a checkpoint of known content.

The launcher runs themselves are covered by tests/launch_real_data_test.py (which also asserts
that a checkpoint holds model, optimizer and step only); here the byte counts are checked against
variables of known sizes, without a training run.
"""

import os

import tensorflow as tf

from bench import checkpoint_size
from deform_tf import model_io
from deform_tf import models


class CheckpointSizeTest(tf.test.TestCase):

    def test_variable_model_and_checkpoint_bytes(self):
        directory = self.get_temp_dir()
        kwargs = dict(config="mnist", downsampling="max_pool", width=0.0625,
                      input_shape=[32, 32, 1], num_classes=10, seed=0)
        model = models.vgg(**kwargs)
        model_io.save_model_config(directory, **kwargs)
        extra = tf.Module()
        extra.slot = tf.Variable(tf.zeros([7]))  # 28 bytes
        extra.count = tf.Variable(tf.zeros([], tf.int64))  # 8 bytes
        prefix = tf.train.Checkpoint(model=model, optimizer=extra).save(
            os.path.join(directory, "ckpt"))  # ckpt-1, with an int64 save_counter (8 bytes)
        weights = sum(w.numpy().nbytes for w in model.weights)
        self.assertEqual(checkpoint_size.model_bytes(directory), weights)
        self.assertEqual(checkpoint_size.variable_bytes(prefix), weights + 44)
        on_disk = sum(os.path.getsize(os.path.join(directory, name))
                      for name in os.listdir(directory) if name.startswith("ckpt-1."))
        self.assertEqual(checkpoint_size.checkpoint_bytes(prefix), on_disk)
        self.assertGreater(on_disk, weights + 44)

    def test_table_and_flags(self):
        row = checkpoint_size.Row("cifar10", "fake", 1100, 1000, 500, 3.0)
        self.assertIn("| cifar10 | fake | 1,100 B | 1,000 B | 500 B | 1.100 | 3 s |",
                      checkpoint_size.format_table([row]))
        args = checkpoint_size.parse_args(["--quick"])
        self.assertEqual((args.steps, args.imagenet_width), (1, 0.03125))
        self.assertEqual(checkpoint_size.parse_args([]).imagenet_width, 1.0)
        with self.assertRaises(SystemExit):
            checkpoint_size.parse_args(["--workloads=mnist"])


if __name__ == "__main__":
    tf.test.main()

"""Tests of `bench.checkpoint_size`'s measurements on a checkpoint of known content.

The launcher runs themselves are covered by tests/launch_real_data_test.py (which also asserts
that a checkpoint holds model, optimizer and step only); here the byte counts are checked against
variables of known sizes, without a training run.
"""

import os

import tensorflow as tf

from bench import checkpoint_size


class CheckpointSizeTest(tf.test.TestCase):

    def test_variable_and_checkpoint_bytes(self):
        model = tf.Module()
        model.kernel = tf.Variable(tf.zeros([3, 5]))  # 60 bytes
        model.bias = tf.Variable(tf.zeros([5], tf.float64))  # 40 bytes
        optimizer = tf.Module()
        optimizer.slot = tf.Variable(tf.zeros([7]))  # 28 bytes
        prefix = tf.train.Checkpoint(model=model, optimizer=optimizer).write(
            os.path.join(self.get_temp_dir(), "ckpt-1"))
        self.assertEqual(checkpoint_size.variable_bytes(prefix, ("model/",)), 100)
        self.assertEqual(checkpoint_size.variable_bytes(prefix, ("model/", "optimizer/")), 128)
        on_disk = sum(os.path.getsize(os.path.join(self.get_temp_dir(), name))
                      for name in os.listdir(self.get_temp_dir()) if name.startswith("ckpt-1."))
        self.assertEqual(checkpoint_size.checkpoint_bytes(prefix), on_disk)
        self.assertGreater(on_disk, 128)

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

"""Smoke test of `bench.pipelines`: tiny data and models, one round, every row present and sane."""

import io
import math
import os
import tempfile

import numpy as np
import tensorflow as tf

from bench import pipelines
from pipelines import cifar10
from pipelines import imagenet

TINY = pipelines.Settings(
    small_batch=8, imagenet_batch=2, cifar_records=16, imagenet_images=8,
    imagenet_jpeg_size=(40, 48), imagenet_shards=4, imagenet_size=32, imagenet_window=4,
    imagenet_strength=2.0, small_widths=(0.0625,), imagenet_widths=(0.03125,))


def parse_tables(report):
    """({(kind, entry): [batch, ex/s, IQR %]}, {(pipeline, model): ratio}) from the report."""
    rows, ratios = {}, {}
    for line in report.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0] in (pipelines.PIPELINE, pipelines.TRAINING):
            rows[tuple(cells[:2])] = [float(cells[2]), float(cells[3].replace(",", "")),
                                      float(cells[4].rstrip("%"))]
        elif len(cells) == 4 and cells[3] in ("met", "NOT met", "n/a"):
            ratios[tuple(cells[:2])] = float(cells[2])
    return rows, ratios


class BenchPipelinesTest(tf.test.TestCase):

    def test_main_prints_every_row_with_positive_numbers(self):
        out = io.StringIO()
        report = pipelines.main(["--quick", "--batches=2", "--imagenet_batches=1",
                                 "--warmup_batches=1"], settings=TINY, out=out)
        self.assertEqual(out.getvalue().strip(), report.strip())
        self.assertIn("QUICK", report)
        self.assertIn("TF " + tf.__version__, report)
        rows, ratios = parse_tables(report)
        models = [pipelines.model_name("mnist", 0.0625), pipelines.model_name("cifar10", 0.0625),
                  pipelines.model_name("imagenet", 0.03125)]
        expected = ({(pipelines.PIPELINE, p) for p in (
            pipelines.FASHION, pipelines.CIFAR, pipelines.SYNTHETIC, pipelines.IMAGENET)}
                    | {(pipelines.TRAINING, m) for m in models})
        self.assertEqual(set(rows), expected)
        for key, (batch, rate, iqr) in rows.items():
            self.assertIn(batch, (8, 2), key)
            self.assertTrue(math.isfinite(rate) and rate > 0, (key, rate))
            self.assertGreaterEqual(iqr, 0.0)
        self.assertEqual(set(ratios), {
            (pipelines.FASHION, models[0]), (pipelines.SYNTHETIC, models[0]),
            (pipelines.CIFAR, models[1]), (pipelines.IMAGENET, models[2])})
        for key, ratio in ratios.items():
            self.assertTrue(math.isfinite(ratio) and ratio > 0, (key, ratio))

    def test_fake_data_is_in_the_real_formats(self):
        root = tempfile.mkdtemp(dir=self.get_temp_dir())
        pipelines.write_fake_cifar10(root, 3)
        images, labels = cifar10.read_binary_split(
            os.path.join(root, cifar10.BINARY_DIR_NAME), "train")
        self.assertEqual(images.shape, (15, 32, 32, 3))
        self.assertTrue(np.all(labels < 10))
        jpeg_dir = os.path.join(root, "imagenet")
        os.makedirs(jpeg_dir)
        pipelines.write_fake_imagenet(jpeg_dir, 4, (40, 48), 2)
        self.assertEqual(imagenet.list_shards(jpeg_dir, "train").counts, (2, 2))
        got = list(imagenet.load("train", jpeg_dir, image_size=16, repeat=False)
                   .as_numpy_iterator())
        self.assertLen(got, 4)
        self.assertEqual(got[0][0].shape, (16, 16, 3))


if __name__ == "__main__":
    tf.test.main()

"""Smoke test of `bench.metrics`: tiny workloads, one round, every row present and sane."""

import io
import math

import tensorflow as tf

from bench import metrics
from tests import bench_support

TINY = (
    metrics.Workload("TinyCifar", "cifar10", 0.0625, 3, 16, 3, 1.0),
    metrics.Workload("TinyImageNet", "imagenet", 0.03125, 2, 32, 2, 1.0),
)


def parse_table(report):
    """{(workload, entry): [s/call, IQR %, x forward]} from the markdown table of the report."""
    return {tuple(cells[:2]): [float(n.rstrip("%")) for n in cells[2:]]
            for cells in bench_support.table_rows(report, 5)}


class BenchMetricsTest(tf.test.TestCase):

    def test_main_prints_every_row_with_positive_numbers(self):
        out = io.StringIO()
        # The library itself as the candidate: exercises the --candidate path cheaply.
        report = metrics.main(["--quick", "--breakdown", "--candidate",
                               metrics.sensitivity.__file__], workloads=TINY, out=out)
        self.assertEqual(out.getvalue().strip(), report.strip())
        self.assertIn("QUICK", report)
        self.assertIn("TF " + tf.__version__, report)
        rows = parse_table(report)
        entries = (metrics.FORWARD, metrics.EVALUATION, metrics.CANDIDATE) + metrics.BREAKDOWN
        self.assertEqual(set(rows), {(w.name, e.strip()) for w in TINY for e in entries})
        for key, (seconds, iqr, ratio) in rows.items():
            self.assertTrue(math.isfinite(seconds) and seconds > 0, (key, seconds))
            self.assertTrue(math.isfinite(ratio) and ratio > 0, (key, ratio))
            self.assertGreaterEqual(iqr, 0.0)
        for w in TINY:
            self.assertEqual(rows[(w.name, metrics.FORWARD)][2], 1.0)
        self.assertIn("target <= 1.3x", report)

    def test_run_benchmark_rows(self):
        rows = metrics.run_benchmark(TINY[:1], reps=2)
        self.assertEqual([r.entry for r in rows], [metrics.FORWARD, metrics.EVALUATION])
        self.assertEqual(rows[0].num_layers, 13)
        for r in rows:
            self.assertTrue(math.isfinite(r.seconds) and r.seconds > 0, r)


if __name__ == "__main__":
    tf.test.main()

"""Smoke test of `bench.training`: a tiny model, two steps per call, every row present and sane."""

import io
import math

import tensorflow as tf

from bench import training
from tests import bench_support

TINY = (training.Case(0.0625, False, batch=4, input_size=16),)


def parse_table(report):
    """{(case, entry): [steps/call, steps/s, IQR %, launcher / this]} from the report."""
    return {tuple(cells[:2]): [float(n.rstrip("%")) for n in cells[2:6]]
            for cells in bench_support.table_rows(report, 7)}


class BenchTrainingTest(tf.test.TestCase):

    def test_main_prints_every_row_with_positive_numbers(self):
        out = io.StringIO()
        report = training.main(["--quick"], cases=TINY, out=out)
        self.assertEqual(out.getvalue().strip(), report.strip())
        self.assertIn("QUICK", report)
        self.assertIn("TF " + tf.__version__, report)
        rows = parse_table(report)
        name = TINY[0].name
        self.assertEqual(set(rows), {(name, training.LAUNCHER), (name, training.FIT_1),
                                     (name, training.FIT_K)})
        for key, (steps_per_call, rate, iqr, ratio) in rows.items():
            self.assertEqual(steps_per_call, 1 if key[1] == training.FIT_1 else 2)
            self.assertTrue(math.isfinite(rate) and rate > 0, (key, rate))
            self.assertTrue(math.isfinite(ratio) and ratio > 0, (key, ratio))
            self.assertGreaterEqual(iqr, 0.0)
        self.assertEqual(rows[(name, training.LAUNCHER)][3], 1.0)


if __name__ == "__main__":
    tf.test.main()

"""Smoke test of `bench.deformation`: tiny workloads, one round, every row present and sane."""

import io
import math

from absl.testing import parameterized
import tensorflow as tf

from bench import deformation
from tests import bench_support

TINY = (
    deformation.Workload("TinyA", 2, 8, 8, 3, 3, 1.0),
    deformation.Workload("TinyB", 1, 6, 9, 1, 2, 2.0),
)


def parse_table(report):
    """{(workload, mode, method): [numeric cells]} from the markdown table of the report."""
    return {tuple(cells[:3]): [float(n.rstrip("%").replace(",", "")) for n in cells[3:]]
            for cells in bench_support.table_rows(report, 8)}


class BenchDeformationTest(parameterized.TestCase, tf.test.TestCase):

    @parameterized.parameters(
        # XLA-compiling sparse_image_warp alone takes seconds; the full bench covers it.
        ("xla", (deformation.FAST, deformation.DENSE, deformation.PROXY, deformation.SAME)),
        ("graph", (deformation.PROXY, deformation.FAST, deformation.SPARSE)),
    )
    def test_run_benchmark_returns_every_row(self, mode, methods):
        rows, checks = deformation.run_benchmark(
            TINY[1:], modes=(mode,), methods=methods, reps=2, min_sample_time=0.0)
        self.assertEqual([(r.workload, r.mode, r.method) for r in rows],
                         [("TinyB", mode, m) for m in methods])
        for r in rows:
            for value in (r.ms_per_batch, r.img_per_s, r.vs_proxy):
                self.assertTrue(math.isfinite(value) and value > 0, r)
            self.assertGreaterEqual(r.spread, 0.0)
        proxy = [r for r in rows if r.method == deformation.PROXY][0]
        self.assertEqual(proxy.vs_proxy, 1.0)
        if mode == "graph":
            # The fast path and sparse_image_warp agree given the same seed.
            self.assertLess(checks["TinyB"], 1e-4)
        else:
            self.assertEqual(checks, {})

    def test_main_quick_prints_every_row_with_positive_numbers(self):
        out = io.StringIO()
        report = deformation.main(["--quick", "--reps=1", "--modes=graph"], workloads=TINY[:1],
                                  out=out)
        self.assertEqual(out.getvalue().strip(), report.strip())
        self.assertIn("QUICK", report)
        self.assertIn("TF " + tf.__version__, report)
        rows = parse_table(report)
        expected = {("TinyA", "graph", m) for m in deformation.METHODS}
        self.assertEqual(set(rows), expected)
        for key, numbers in rows.items():
            ms, img_s, iqr, vs_proxy, vs_graph = numbers
            for value in (ms, img_s, vs_proxy, vs_graph):
                self.assertTrue(math.isfinite(value) and value > 0, (key, numbers))
            self.assertGreaterEqual(iqr, 0.0)

    def test_proxy_is_required(self):
        with self.assertRaisesRegex(ValueError, "proxy"):
            deformation.run_benchmark(TINY[:1], methods=(deformation.FAST,))


if __name__ == "__main__":
    tf.test.main()

"""Tests of `bench.vs_albumentations`: its exactness measures against closed forms and scipy, our
rows without albumentations, the refusal without it, and a tiny full run when it is installed."""

import importlib.util
import io
import math
import sys
from unittest import mock

from absl.testing import parameterized
import numpy as np
from scipy import ndimage
import tensorflow as tf

from bench import vs_albumentations as bench

HAVE_ALBUMENTATIONS = importlib.util.find_spec("albumentations") is not None
TINY = (bench.Workload("Tiny", 12, 10, 3, 1.5),)


class MeasuresTest(parameterized.TestCase, tf.test.TestCase):

    @parameterized.parameters(((1.0, 1.0),), ((1 / 12, 1 / 10),))
    def test_nominal_tps_of_affine_data_is_that_affine_map(self, frame):
        # A thin-plate spline reproduces affine data exactly, in any coordinate frame.
        controls = np.array([[0, 0], [0, 9], [11, 0], [11, 9], [5, 4], [3, 7]], np.float64)
        affine = np.array([[1.1, 0.2], [-0.1, 0.9]])
        sources = controls @ affine.T + [0.5, -1.0]
        nominal = bench.nominal_tps(controls, sources, 12, 10, frame)
        pixels = bench.pixel_positions(12, 10)
        self.assertAllClose(nominal, pixels @ affine.T + [0.5, -1.0], atol=1e-9)

    def test_nominal_elastic_matches_a_direct_gaussian_smoothing(self):
        noise = np.zeros([2, 9, 11])
        noise[0, 4, 5] = 1.0  # dx impulse
        nominal = bench.nominal_elastic(noise, 3.0, 1.5)
        ys, xs = np.meshgrid(np.arange(9), np.arange(11), indexing="ij")
        kernel = np.exp(-((ys - 4.0) ** 2 + (xs - 5.0) ** 2) / (2 * 1.5 ** 2))
        # Far from the border, the smoothed impulse is the normalized 2-D Gaussian.
        expected_dx = 3.0 * kernel / (2 * np.pi * 1.5 ** 2)
        self.assertAllClose(nominal[2:7, 2:9, 1] - xs[2:7, 2:9], expected_dx[2:7, 2:9],
                            atol=2e-4)
        self.assertAllEqual(nominal[..., 0], ys)  # no dy noise: rows unchanged

    def test_nominal_diffeo_against_a_loop_over_modes(self):
        rng = np.random.default_rng(1)
        coefficients = rng.normal(size=[2, 3, 3])
        nominal = bench.nominal_diffeo(coefficients, 7, 5)
        for y, x in [(0, 0), (3, 2), (6, 4), (2, 1)]:
            fields = [sum(c[i, j] * math.sin((i + 1) * math.pi * y / 6)
                          * math.sin((j + 1) * math.pi * x / 4)
                          for i in range(3) for j in range(3)) for c in coefficients]
            self.assertAllClose(nominal[y, x], [y - 7 * fields[0], x - 5 * fields[1]],
                                atol=1e-12)

    def test_map_errors_at_controls_and_over_the_field(self):
        nominal = bench.pixel_positions(6, 5)
        realized = nominal.copy()
        realized[2, 3] += [0.3, 0.4]  # 0.5 px off at one pixel
        control, field = bench.map_errors(realized, nominal, [[2.0, 3.0], [2.5, 3.0], [9, 9]])
        self.assertAllClose([control, field], [0.5, 0.5])
        control, _ = bench.map_errors(realized, nominal, [[2.5, 3.0], [0.0, 0.0]])
        self.assertAllClose(control, 0.25)  # halfway between rows 2 and 3
        self.assertTrue(math.isnan(bench.map_errors(realized, nominal)[0]))

    def test_resampling_error_of_an_exact_bilinear_read_is_the_uint8_rounding(self):
        parity = bench.parity_image(16, 14)
        rng = np.random.default_rng(2)
        realized = bench.pixel_positions(16, 14) + rng.uniform(-3, 3, [16, 14, 2])
        warped = np.stack([ndimage.map_coordinates(parity[..., c].astype(np.float64),
                                                   [realized[..., 0], realized[..., 1]],
                                                   order=1, mode="nearest")
                           for c in range(3)], axis=-1)
        self.assertLess(bench.resampling_error(warped, realized), 1e-9)
        self.assertLess(bench.resampling_error(np.round(warped), realized), 0.5 / 255 * 1.5)
        # Reading a quarter pixel lower is seen as a quarter pixel.
        shifted = realized + [0.25, 0.0]
        error = bench.resampling_error(warped, shifted)
        self.assertGreater(error, 0.2)


class OurRowsTest(tf.test.TestCase):

    def test_our_rows_run_without_albumentations(self):
        rows = bench.run_benchmark(TINY, include_albumentations=False, batch=2, reps=1,
                                   min_sample_time=0.0, draws=1)
        self.assertEqual([(r.method, r.batch) for r in rows],
                         [(bench.OUR_TPS, 1), (bench.OUR_DIFFEO, 1), (bench.OUR_TPS, 2),
                          (bench.OUR_DIFFEO, 2)])
        for r in rows:
            self.assertTrue(math.isfinite(r.img_per_s) and r.img_per_s > 0, r)
            self.assertTrue(math.isnan(r.vs_albumentations), r)
            # float32 maps and reads against float64 definitions: well under 1e-3 px.
            self.assertLess(r.field_error, 1e-4, r)
            self.assertLess(r.resampling_error, 1e-4, r)
        self.assertLess(rows[0].control_error, 1e-4)
        self.assertTrue(math.isnan(rows[1].control_error))
        table = bench.format_table(rows)
        self.assertEqual(len(table.splitlines()), 2 + len(rows))

    def test_refuses_without_albumentations_with_the_install_command(self):
        with mock.patch.dict(sys.modules, {"albumentations": None}):
            with self.assertRaisesRegex(SystemExit, r"pip install -e \"\.\[bench\]\""):
                bench.main(["--quick"], workloads=TINY, out=io.StringIO())
            with self.assertRaisesRegex(SystemExit, "albumentations"):
                bench.run_benchmark(TINY, reps=1, draws=1)


@mock.patch.object(bench, "single_thread", lambda cv2=None: False)  # TF is already running
class WithAlbumentationsTest(tf.test.TestCase):

    def setUp(self):
        super().setUp()
        if not HAVE_ALBUMENTATIONS:
            self.skipTest("albumentations is not installed (optional: pip install -e '.[bench]')")

    def test_quick_run_prints_every_row(self):
        out = io.StringIO()
        report = bench.main(["--quick", "--reps=1", "--min_sample_time=0"], workloads=TINY,
                            out=out)
        self.assertEqual(out.getvalue().strip(), report.strip())
        self.assertIn("albumentations", report)
        methods = [line.split("|")[2].strip() for line in report.splitlines()
                   if line.startswith("| Tiny")]
        self.assertCountEqual(methods, [bench.OUR_TPS, bench.OUR_DIFFEO] * 2
                              + [bench.ALB_TPS, bench.ALB_ELASTIC])

    def test_albumentations_measures_are_finite_and_reads_follow_its_map(self):
        albumentations, functional, _ = bench.load_albumentations()
        w = TINY[0]
        control, field, resampling = bench.albumentations_tps_exactness(
            albumentations, functional, w, 1)
        self.assertTrue(all(math.isfinite(v) for v in (control, field, resampling)))
        self.assertLess(resampling, 0.05)  # OpenCV reads where its map says (uint8 output)
        control, field, resampling = bench.albumentations_elastic_exactness(
            albumentations, functional, w, 1)
        self.assertTrue(math.isnan(control) and math.isfinite(field))
        self.assertLess(resampling, 0.05)


if __name__ == "__main__":
    tf.test.main()

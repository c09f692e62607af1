"""Tests of the Fig. 1/Fig. 2 pictures (`deform_tf.figures.deformation`) and `launch.demo`.

The panels must show exactly what the library does: the deformed image is `tps_grid_warp`'s
output, at each grid point it is the bilinear sample of the original at that point's source, and
the flow there is grid - source. The plots must return figures that save to readable PNGs, and the
demo must write its three PNGs (and nothing else) or fail with a clear usage error.
"""

import os
import subprocess
import sys
import tempfile

from absl import app
from absl import flags
from absl.testing import flagsaver
from absl.testing import parameterized
from matplotlib import image as mpimg
from matplotlib import quiver
from matplotlib.figure import Figure
import numpy as np
from scipy import ndimage
import tensorflow as tf

from deform_tf import tps
from deform_tf.figures import deformation
from launch import deformation_figures
from launch import demo

FLAGS = flags.FLAGS
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_image(height, width, channels, kind):
    """A smooth-ish test image with structure: 'uint8', 'unit' (float 0..1) or 'float255'."""
    rng = np.random.default_rng(height * 1000 + width * 10 + channels)
    values = ndimage.gaussian_filter(rng.uniform(size=(height, width, channels)), (1.0, 1.0, 0))
    values = (values - values.min()) / (values.max() - values.min())
    if kind == "uint8":
        return np.round(255 * values).astype(np.uint8)
    if kind == "float255":
        return (255 * values).astype(np.float32)
    return values.astype(np.float32)


def bilinear_oracle(image, points):
    """scipy's bilinear sample of [H, W, C] `image` at (y, x) `points` [K, 2], edges clamped."""
    image = np.asarray(image, np.float64)
    return np.stack([
        ndimage.map_coordinates(image[..., c], points.T, order=1, mode="nearest")
        for c in range(image.shape[-1])], axis=-1)


class DeformationPanelsTest(parameterized.TestCase, tf.test.TestCase):

    # Sizes where every grid point is an integer pixel, so the deformed image has a value there.
    @parameterized.parameters(
        (31, 31, 1, 4, 3.0, "uint8"),
        (25, 33, 3, (3, 5), 4.0, "unit"),
        (13, 13, 3, 3, 2.5, "float255"),
        (21, 21, 1, 5, 6.0, "unit"),  # Sources beyond the border: clamped sampling.
    )
    def test_panels_are_the_library_deformation(self, height, width, channels, grid_size,
                                                strength, kind):
        image = make_image(height, width, channels, kind)
        seed = (7, height)
        panels = deformation.deformation_panels(image, grid_size, strength, seed)
        rows, cols = panels.grid_size
        grid = tps.grid_points(height, width, grid_size)
        self.assertAllEqual(panels.grid_points, grid)
        self.assertEqual(panels.flow.shape, (height, width, 2))
        self.assertEqual(panels.deformed.shape, (height, width, channels))

        # The sources are the library's random offsets for this seed, within [-C, C].
        offsets = tps.random_source_offsets(1, rows * cols, strength, tf.constant(seed, tf.int64))
        self.assertAllClose(panels.source_points - grid, offsets.numpy()[0], atol=1e-5, rtol=0)
        self.assertLessEqual(np.max(np.abs(panels.source_points - grid)), strength)

        # The deformed image and flow are tps_grid_warp's output.
        warped, flow = tps.tps_grid_warp(image[None].astype(np.float32), offsets, grid_size)
        self.assertAllClose(panels.deformed, warped.numpy()[0], atol=1e-6, rtol=0)
        self.assertAllClose(panels.flow, flow.numpy()[0], atol=1e-6, rtol=0)

        # At a grid point the flow is grid - source and the value is the original at the source.
        index = np.round(grid).astype(int)
        self.assertAllClose(index, grid, atol=1e-9, rtol=0)  # Integer grid points, by choice.
        at_grid_flow = panels.flow[index[:, 0], index[:, 1]]
        self.assertAllClose(at_grid_flow, grid - panels.source_points, atol=1e-4, rtol=0)
        at_grid_value = panels.deformed[index[:, 0], index[:, 1]]
        scale = 255.0 if kind != "unit" else 1.0
        self.assertAllClose(at_grid_value, bilinear_oracle(image, panels.source_points),
                            atol=2e-5 * scale, rtol=0)

    def test_zero_strength_is_the_identity(self):
        image = make_image(17, 23, 3, "uint8")
        panels = deformation.deformation_panels(image, 4, 0.0, 3)
        self.assertAllEqual(panels.source_points, panels.grid_points)
        self.assertAllEqual(panels.flow, np.zeros([17, 23, 2]))
        self.assertAllEqual(panels.deformed, image.astype(np.float32))

    def test_grayscale_without_channel_axis_and_seed_conventions(self):
        image = make_image(16, 16, 1, "uint8")
        a = deformation.deformation_panels(image[..., 0], 3, 2.0, 5)
        b = deformation.deformation_panels(image, 3, 2.0, (5, 0))
        c = deformation.deformation_panels(image, 3, 2.0, (5, 1))
        self.assertEqual(a.deformed.shape, (16, 16, 1))
        self.assertAllEqual(a.deformed, b.deformed)  # Int seed s means (s, 0); same seed, same.
        self.assertNotAllClose(a.source_points, c.source_points)

    @parameterized.named_parameters(
        ("two_channels", np.zeros([8, 8, 2], np.uint8), 3, 1.0, 0, "grayscale"),
        ("rank_4", np.zeros([1, 8, 8, 1], np.uint8), 3, 1.0, 0, "grayscale"),
        ("grid_too_small", np.zeros([8, 8], np.uint8), 1, 1.0, 0, "grid_size"),
        ("negative_strength", np.zeros([8, 8], np.uint8), 3, -1.0, 0, "strength"),
        ("bad_seed", np.zeros([8, 8], np.uint8), 3, 1.0, "x", "seed"),
        ("bool_image", np.zeros([8, 8], bool), 3, 1.0, 0, "dtype"),
    )
    def test_bad_arguments(self, image, grid_size, strength, seed, message):
        with self.assertRaisesRegex(ValueError, message):
            deformation.deformation_panels(image, grid_size, strength, seed)


class PlotTest(parameterized.TestCase, tf.test.TestCase):

    def save_and_read(self, figure, dpi=60):
        path = os.path.join(tempfile.mkdtemp(dir=self.get_temp_dir()), "figure.png")
        figure.savefig(path, dpi=dpi)
        self.assertGreater(os.path.getsize(path), 1000)
        pixels = mpimg.imread(path)
        width, height = figure.get_size_inches() * dpi
        self.assertAllClose(pixels.shape[:2], (height, width), atol=1, rtol=0)
        self.assertGreater(np.std(pixels[..., :3]), 0.01)  # Not a blank canvas.
        return pixels

    @parameterized.parameters(
        (32, 32, 1, "uint8", 4, 3.0),
        (40, 56, 3, "unit", 3, 4.0),
        (24, 24, 3, "float255", (3, 4), 0.0),
        (97, 97, 3, "uint8", 4, 3.0),  # Small offsets on a large grid: (a) is magnified.
    )
    def test_construction_figure(self, height, width, channels, kind, grid_size, strength):
        image = make_image(height, width, channels, kind)
        panels = deformation.deformation_panels(image, grid_size, strength, 1)
        figure = deformation.plot_deformation_construction(panels, image)
        self.assertIsInstance(figure, Figure)
        self.assertLen(figure.axes, 4)
        axes = figure.axes
        for ax, letter in zip(axes, "abcd"):
            self.assertTrue(ax.get_title(loc="left").startswith(f"({letter})"))
            bottom, top = ax.get_ylim()
            self.assertGreater(bottom, top)  # y downward, as imshow.
        self.assertIn(f"C = {strength:g} px", figure._suptitle.get_text())
        self.assertLen(axes[2].images, 1)
        self.assertLen(axes[3].images, 1)
        if strength > 0 and height > 90:
            self.assertIn("offsets \u00d7", axes[0].get_title(loc="left"))

        # (b): arrows from where a pixel is sampled (p - flow) to where it lands (p).
        arrows = [c for c in axes[1].collections if isinstance(c, quiver.Quiver)]
        self.assertLen(arrows, 1)
        arrow = arrows[0]
        tails = arrow.get_offsets()  # (x, y) of the tails
        tips = tails + np.stack([arrow.U.ravel(), arrow.V.ravel()], axis=1)
        tip_index = np.round(tips).astype(int)
        self.assertAllClose(tips, tip_index, atol=1e-4, rtol=0)  # Tips on pixels.
        flow = panels.flow[tip_index[:, 1], tip_index[:, 0]]
        self.assertAllClose(arrow.V.ravel(), flow[:, 0], atol=1e-5, rtol=0)
        self.assertAllClose(arrow.U.ravel(), flow[:, 1], atol=1e-5, rtol=0)
        self.save_and_read(figure)

    def test_construction_figure_rejects_bad_input(self):
        image = make_image(20, 20, 1, "uint8")
        panels = deformation.deformation_panels(image, 3, 2.0, 0)
        with self.assertRaisesRegex(ValueError, "20x20"):
            deformation.plot_deformation_construction(panels, image[:10])
        with self.assertRaisesRegex(ValueError, "offset_zoom"):
            deformation.plot_deformation_construction(panels, image, offset_zoom=0.5)

    def test_examples_figure(self):
        images = [make_image(32, 32, 1, "uint8"), make_image(48, 48, 3, "unit"),
                  make_image(20, 30, 3, "float255")]
        deformed = [deformation.deformation_panels(x, 3, 2.0, i).deformed
                    for i, x in enumerate(images)]
        figure = deformation.plot_examples(images, deformed, titles=["a", "b", "c"],
                                           pairs_per_row=2, suptitle="examples")
        self.assertIsInstance(figure, Figure)
        self.assertLen(figure.axes, 8)  # 2 rows x 2 pairs; the unused pair is hidden.
        self.assertLen([ax for ax in figure.axes if ax.images], 6)
        self.save_and_read(figure)

    def test_examples_figure_rejects_mismatched_pairs(self):
        image = make_image(16, 16, 1, "uint8")
        with self.assertRaisesRegex(ValueError, "differ in size"):
            deformation.plot_examples([image], [image[:8]])
        with self.assertRaisesRegex(ValueError, "as many deformed"):
            deformation.plot_examples([image, image], [image])


class DemoTest(tf.test.TestCase):

    def setUp(self):
        super().setUp()
        if not FLAGS.is_parsed():  # Under pytest; tf.test.main parses the flags itself.
            FLAGS.mark_as_parsed()

    def test_writes_its_three_figures_and_nothing_else(self):
        output_dir = os.path.join(tempfile.mkdtemp(dir=self.get_temp_dir()), "new", "demo")
        os.makedirs(output_dir)
        keep = os.path.join(output_dir, "keep.txt")
        with open(keep, "w") as f:
            f.write("untouched")
        with flagsaver.flagsaver(output_dir=output_dir, seed=3):
            self.assertEqual(demo.main(["demo"]), 0)
        self.assertCountEqual(os.listdir(output_dir), list(deformation_figures.OUTPUT_NAMES) + ["keep.txt"])
        with open(keep) as f:
            self.assertEqual(f.read(), "untouched")
        for name in deformation_figures.OUTPUT_NAMES:
            pixels = mpimg.imread(os.path.join(output_dir, name))
            self.assertGreater(min(pixels.shape[:2]), 300)
            self.assertGreater(np.std(pixels[..., :3]), 0.01)

    def test_photo_and_digit_inputs(self):
        photo = deformation_figures.load_photo(deformation_figures.sample_photo_path())
        self.assertEqual(photo.shape, (224, 224, 3))
        self.assertEqual(photo.dtype, np.uint8)
        digit = deformation_figures.pad_digit(np.full([28, 28], 255, np.uint8))
        self.assertEqual(digit.shape, (32, 32, 1))
        self.assertEqual(int(digit.sum()), 28 * 28 * 255)

    def test_unwritable_output_dir_is_a_usage_error(self):
        blocker = os.path.join(tempfile.mkdtemp(dir=self.get_temp_dir()), "a_file")
        with open(blocker, "w") as f:
            f.write("x")
        with flagsaver.flagsaver(output_dir=os.path.join(blocker, "demo")):
            with self.assertRaisesRegex(app.UsageError, "--output_dir") as raised:
                demo.main(["demo"])
        self.assertEqual(raised.exception.exitcode, 2)

    def test_bad_flag_values_are_rejected(self):
        for name, value, message in (("grid_size", 1, "--grid_size must be >= 2"),
                                     ("strength_photo", -1.0, "--strength_photo"),
                                     ("strength_digit", float("nan"), "--strength_digit"),
                                     ("output_dir", " ", "--output_dir")):
            with flagsaver.flagsaver():
                with self.assertRaisesRegex(flags.IllegalFlagValueError, message):
                    setattr(FLAGS, name, value)

    def test_bad_flag_exits_with_status_2_and_a_clear_message(self):
        with tempfile.TemporaryDirectory() as output_dir:
            result = subprocess.run(
                [sys.executable, "-m", "launch.demo", "--grid_size=1",
                 f"--output_dir={output_dir}"],
                cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
            self.assertEqual(result.returncode, 2, result.stderr)
            self.assertIn("--grid_size must be >= 2", result.stderr)
            self.assertEmpty(os.listdir(output_dir))


if __name__ == "__main__":
    tf.test.main()

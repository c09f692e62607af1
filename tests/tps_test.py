"""Tests of the fast TPS path: operator vs scipy, equality with the general warp, seeds, XLA."""

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

import deform_tf
from deform_tf import tps
from tests.oracles import scipy_sparse_warp
from tests.oracles import scipy_tps


class TpsGridOperatorTest(parameterized.TestCase, tf.test.TestCase):

    @parameterized.parameters((32, 32, 3), (20, 28, 4), (17, 9, (2, 3)), (64, 48, 5))
    def test_operator_matches_scipy(self, height, width, grid_size):
        operator = tps.tps_grid_operator(height, width, grid_size)
        grid = tps.grid_points(height, width, grid_size)
        rng = np.random.default_rng(height)
        values = rng.uniform(-3, 3, size=(len(grid), 2))
        ys, xs = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
        pixels = np.stack([ys.ravel(), xs.ravel()], axis=1).astype(np.float64)
        self.assertAllClose(operator @ values, scipy_tps(grid, values, pixels), atol=1e-8)

    def test_operator_is_cached_and_read_only(self):
        first = tps.tps_grid_operator(32, 32, 3)
        self.assertIs(first, tps.tps_grid_operator(32, 32, (3, 3)))
        self.assertFalse(first.flags.writeable)
        self.assertAllClose(first.sum(axis=1), np.ones(32 * 32), atol=1e-10)

    def test_grid_points_include_the_border(self):
        grid = tps.grid_points(32, 20, (3, 5))
        self.assertAllClose(grid[:5], [[0, 0], [0, 4.75], [0, 9.5], [0, 14.25], [0, 19]])
        self.assertAllClose(grid[-1], [31, 19])

    @parameterized.parameters(1, 0, ((3, 1),), "a")
    def test_bad_grid_size(self, grid_size):
        with self.assertRaisesRegex(ValueError, "grid_size"):
            tps.tps_grid_operator(32, 32, grid_size)

    def test_image_too_small(self):
        with self.assertRaisesRegex(ValueError, "2x2"):
            tps.tps_grid_operator(1, 32, 3)


class RandomTpsDeformationTest(parameterized.TestCase, tf.test.TestCase):

    @parameterized.parameters(
        (2, 32, 32, 3, 3, 2.0), (1, 24, 40, 1, 4, 3.0), (3, 16, 20, 5, (2, 3), 1.5))
    def test_fast_path_equals_general_sparse_warp_and_scipy(
            self, batch, height, width, channels, grid_size, strength):
        rng = np.random.default_rng(height * width)
        images = rng.uniform(size=(batch, height, width, channels)).astype(np.float32)
        rows, cols = (grid_size, grid_size) if isinstance(grid_size, int) else grid_size
        offsets = tps.random_source_offsets(batch, rows * cols, strength, [7, height])
        fast, fast_flow = deform_tf.tps_grid_warp(images, offsets, grid_size)
        grid = np.broadcast_to(tps.grid_points(height, width, grid_size), offsets.shape)
        grid = grid.astype(np.float32)
        general, general_flow = deform_tf.sparse_image_warp(images, grid + offsets, grid)
        self.assertAllClose(fast_flow, general_flow, atol=1e-4)
        self.assertAllClose(fast, general, atol=1e-4)
        expected, expected_flow = scipy_sparse_warp(images, grid + offsets.numpy(), grid)
        self.assertAllClose(fast_flow, expected_flow, atol=1e-4)
        self.assertAllClose(fast, expected, atol=1e-4)

    def test_grid_point_samples_its_source(self):
        rng = np.random.default_rng(0)
        # 33 px: the 3x3 grid sits on whole pixels (0, 16, 32).
        images = rng.uniform(size=(1, 33, 33, 1)).astype(np.float32)
        _, flow = deform_tf.random_tps_deformation(images, 3, 2.0, [1, 2], return_flow=True)
        offsets = tps.random_source_offsets(1, 9, 2.0, [1, 2]).numpy()
        grid = tps.grid_points(33, 33, 3)
        for (y, x), offset in zip(grid.astype(int), offsets[0]):
            self.assertAllClose(flow[0, y, x], -offset, atol=1e-5)
        self.assertTrue(np.all(np.abs(offsets) <= 2.0))

    def test_strength_zero_is_exact_identity(self):
        images = np.random.default_rng(1).normal(size=(4, 32, 32, 3)).astype(np.float32)
        for seed in ([0, 0], [5, 9]):
            got = deform_tf.random_tps_deformation(images, 3, 0.0, seed)
            np.testing.assert_array_equal(got.numpy(), images)

    def test_same_seed_same_output_different_seed_differs(self):
        images = np.random.default_rng(2).uniform(size=(3, 32, 32, 3)).astype(np.float32)
        a = deform_tf.random_tps_deformation(images, 3, 2.0, [1, 2])
        b = deform_tf.random_tps_deformation(images, 3, 2.0, [1, 2])
        c = deform_tf.random_tps_deformation(images, 3, 2.0, [1, 3])
        np.testing.assert_array_equal(a.numpy(), b.numpy())
        self.assertGreater(np.abs(a.numpy() - c.numpy()).mean(), 1e-3)
        # Images of one batch get different deformations.
        same = np.repeat(images[:1], 2, axis=0)
        d = deform_tf.random_tps_deformation(same, 3, 2.0, [1, 2]).numpy()
        self.assertGreater(np.abs(d[0] - d[1]).mean(), 1e-3)

    def test_per_example_seeds_do_not_depend_on_the_batch(self):
        images = np.random.default_rng(3).uniform(size=(8, 16, 16, 1)).astype(np.float32)
        seeds = np.array([[1, 10], [1, 11], [2, 10], [3, 3], [0, 0], [5, 1], [1, 2], [9, 9]],
                         np.int32)
        whole_offsets = tps.random_source_offsets(8, 9, 2.0, seeds).numpy()
        whole = deform_tf.random_tps_deformation(images, 3, 2.0, seeds).numpy()
        for i in range(8):
            # The random draw is bit-identical; the warp agrees to float32 rounding (the flow
            # matmul's accumulation order depends on the batch size).
            np.testing.assert_array_equal(
                tps.random_source_offsets(1, 9, 2.0, seeds[i:i + 1]).numpy()[0],
                whole_offsets[i])
            alone = deform_tf.random_tps_deformation(images[i:i + 1], 3, 2.0, seeds[i:i + 1])
            self.assertAllClose(alone.numpy()[0], whole[i], atol=1e-5, rtol=0)
        halves = [deform_tf.random_tps_deformation(images[s], 3, 2.0, seeds[s]).numpy()
                  for s in (slice(0, 3), slice(3, 8))]
        self.assertAllClose(np.concatenate(halves), whole, atol=1e-5, rtol=0)

    @parameterized.parameters(True, False)
    def test_random_deformation_is_the_grid_warp_of_random_offsets(self, jit_compile):
        images = np.random.default_rng(8).uniform(size=(3, 20, 24, 3)).astype(np.float32)
        offsets = tps.random_source_offsets(3, 12, 2.5, [4, 1])
        want, want_flow = deform_tf.tps_grid_warp(images, offsets, (3, 4), jit_compile)
        got, flow = deform_tf.random_tps_deformation(
            images, (3, 4), 2.5, [4, 1], return_flow=True, jit_compile=jit_compile)
        np.testing.assert_array_equal(got.numpy(), want.numpy())
        np.testing.assert_array_equal(flow.numpy(), want_flow.numpy())
        alone = deform_tf.random_tps_deformation(images, (3, 4), 2.5, [4, 1],
                                                 jit_compile=jit_compile)
        np.testing.assert_array_equal(alone.numpy(), want.numpy())

    def test_seed_shapes_alternate_without_mixing_streams(self):
        # The compiled core is traced with reduce_retracing: a [2] seed then [batch, 2] seeds
        # (a relaxed trace) must still draw one stream per example.
        images = np.random.default_rng(7).uniform(size=(4, 12, 12, 1)).astype(np.float32)
        seeds = np.array([[1, 2], [3, 4], [5, 6], [7, 8]], np.int32)
        for seed in ([1, 2], seeds, [3, 3], seeds[:3], seeds):
            count = len(seed) if np.ndim(seed) == 2 else 4
            got = deform_tf.random_tps_deformation(images[:count], 3, 2.0, seed)
            want, _ = deform_tf.tps_grid_warp(
                images[:count], tps.random_source_offsets(count, 9, 2.0, seed), 3)
            np.testing.assert_array_equal(got.numpy(), want.numpy())

    def test_xla_core_matches_plain_ops(self):
        images = np.random.default_rng(9).uniform(size=(3, 24, 20, 2)).astype(np.float32)
        offsets = tps.random_source_offsets(3, 16, 3.0, [2, 2])
        fast = deform_tf.tps_grid_warp(images, offsets, 4)
        plain = deform_tf.tps_grid_warp(images, offsets, 4, jit_compile=False)
        for a, b in zip(fast, plain):
            self.assertAllClose(a, b, atol=1e-5, rtol=0)

    @parameterized.parameters(
        (np.float16, np.float16), (np.float32, np.float32), (np.float64, np.float64),
        (np.uint8, np.float32))
    def test_dtypes(self, image_dtype, expected_dtype):
        images = np.random.default_rng(4).integers(0, 255, size=(2, 16, 16, 3)).astype(image_dtype)
        got, flow = deform_tf.random_tps_deformation(images, 3, 2.0, [4, 4], return_flow=True)
        self.assertEqual(got.dtype, expected_dtype)
        expected = deform_tf.dense_image_warp(images.astype(np.float64), tf.cast(flow, tf.float64))
        tolerance = 0.5 if image_dtype == np.float16 else 1e-3
        self.assertAllClose(got.numpy().astype(np.float64), expected, atol=tolerance)

    def test_gradients_match_finite_differences(self):
        rng = np.random.default_rng(5)
        images = tf.constant(rng.uniform(size=(1, 8, 9, 2)))
        offsets = tf.constant(rng.uniform(-0.9, 0.9, size=(1, 9, 2)))
        for which in (0, 1):
            def f(x, which=which):
                args = [images, offsets]
                args[which] = x
                return deform_tf.tps_grid_warp(args[0], args[1], 3)[0]
            theoretical, numerical = tf.test.compute_gradient(
                f, [[images, offsets][which]], delta=1e-5)
            self.assertAllClose(theoretical, numerical, atol=1e-4)

    def test_xla_and_graph_match_eager(self):
        images = np.random.default_rng(6).uniform(size=(4, 32, 32, 3)).astype(np.float32)
        seed = tf.constant([3, 4])
        eager = deform_tf.random_tps_deformation(images, 3, 2.0, seed)
        for jit in (False, True):
            fn = tf.function(lambda x, s: deform_tf.random_tps_deformation(x, 3, 2.0, s),
                             input_signature=[tf.TensorSpec([None, 32, 32, 3]),
                                              tf.TensorSpec([2], tf.int32)], jit_compile=jit)
            self.assertAllClose(fn(images, seed), eager, atol=1e-5)

    def test_in_tf_data_with_per_example_seeds(self):
        images = np.random.default_rng(7).uniform(size=(6, 16, 16, 1)).astype(np.float32)
        dataset = tf.data.Dataset.from_tensor_slices(images).enumerate()
        dataset = dataset.map(lambda i, x: deform_tf.random_tps_deformation(
            x[None], 3, 2.0, tf.stack([tf.constant(9, tf.int64), i])[None])[0])
        per_example = np.stack(list(dataset.as_numpy_iterator()))
        seeds = np.stack([np.full(6, 9), np.arange(6)], axis=1)
        batched = deform_tf.random_tps_deformation(images, 3, 2.0, seeds)
        self.assertAllClose(per_example, batched, atol=1e-6)

    def test_strength_as_tensor(self):
        images = np.random.default_rng(8).uniform(size=(2, 16, 16, 1)).astype(np.float32)
        got = deform_tf.random_tps_deformation(images, 3, tf.constant(2.0), [1, 1])
        self.assertAllClose(got, deform_tf.random_tps_deformation(images, 3, 2.0, [1, 1]))
        with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "strength"):
            deform_tf.random_tps_deformation(images, 3, tf.constant(-1.0), [1, 1])

    @parameterized.named_parameters(
        ("negative_strength", dict(strength=-1.0), "strength"),
        ("nan_strength", dict(strength=float("nan")), "strength"),
        ("grid_one", dict(grid_size=1), "grid_size"),
        ("seed_shape", dict(seed=[1, 2, 3]), "seed"),
        ("seed_float", dict(seed=[1.0, 2.0]), "seed"),
        ("image_rank", dict(images=np.zeros([16, 16, 1], np.float32)), "images"),
        ("unknown_size", dict(images=None), "height and width"),
    )
    def test_bad_input(self, overrides, word):
        args = dict(images=np.zeros([1, 16, 16, 1], np.float32), grid_size=3, strength=2.0,
                    seed=[1, 2])
        args.update(overrides)
        if args["images"] is None:
            fn = tf.function(lambda x: deform_tf.random_tps_deformation(x, 3, 2.0, [1, 2]),
                             input_signature=[tf.TensorSpec([None, None, None, 1])])
            with self.assertRaisesRegex(ValueError, word):
                fn.get_concrete_function()
            return
        with self.assertRaisesRegex(ValueError, word):
            deform_tf.random_tps_deformation(**args)

    def test_bad_offsets_shape(self):
        with self.assertRaisesRegex(ValueError, "rows \\* cols = 9"):
            deform_tf.tps_grid_warp(np.zeros([1, 16, 16, 1]), np.zeros([1, 16, 2]), 3)


class TpsGridFlowTest(parameterized.TestCase, tf.test.TestCase):

    @parameterized.parameters((16, 16, 3, tf.float64), (13, 21, (2, 4), tf.float64),
                              (20, 12, 4, tf.float32))
    def test_matches_scipy_thin_plate_spline(self, height, width, grid_size, dtype):
        rows, cols = (grid_size, grid_size) if isinstance(grid_size, int) else grid_size
        grid_y, grid_x = np.meshgrid(np.linspace(0, height - 1, rows),
                                     np.linspace(0, width - 1, cols), indexing="ij")
        grid = np.stack([grid_y.ravel(), grid_x.ravel()], axis=1)  # row-major, border included
        rng = np.random.default_rng(height + width)
        offsets = rng.uniform(-3, 3, size=(2, rows * cols, 2))
        flow = tps.tps_grid_flow(height, width, grid_size, tf.constant(offsets, dtype))
        self.assertEqual(flow.dtype, dtype)
        self.assertEqual(flow.shape, (2, height, width, 2))
        pixels = np.stack(np.meshgrid(np.arange(height), np.arange(width), indexing="ij"),
                          axis=-1).reshape(-1, 2).astype(np.float64)
        expected = np.stack([-scipy_tps(grid, o, pixels).reshape(height, width, 2)
                             for o in offsets])
        self.assertAllClose(flow, expected, atol=1e-8 if dtype == tf.float64 else 2e-5, rtol=0)
        # At a grid point the flow is minus its offset: the output there is the input at
        # grid + offset, the source.
        at_grid = flow.numpy()[:, np.rint(grid[:, 0]).astype(int), np.rint(grid[:, 1]).astype(int)]
        on_pixels = np.all(grid == np.rint(grid), axis=1)
        self.assertAllClose(at_grid[:, on_pixels], -offsets[:, on_pixels],
                            atol=1e-8 if dtype == tf.float64 else 2e-5)


if __name__ == "__main__":
    tf.test.main()

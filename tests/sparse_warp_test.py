"""Tests of `sparse_image_warp`: scipy oracles for the spline and the warp, tfa's conventions."""

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

import deform_tf
from deform_tf import sparse_image_warp
from deform_tf import sparse_warp
from tests.oracles import scipy_dense_warp
from tests.oracles import scipy_sparse_warp


class SparseImageWarpTest(parameterized.TestCase, tf.test.TestCase):

    @parameterized.parameters(
        (1, 16, 16, 1, 5), (2, 12, 20, 3, 7), (1, 24, 10, 5, 4), (3, 9, 9, 3, 12))
    def test_matches_scipy(self, batch, height, width, channels, num_points):
        rng = np.random.default_rng(height * width + num_points)
        image = rng.uniform(size=(batch, height, width, channels)).astype(np.float32)
        scale = np.array([height - 1, width - 1])
        source = (rng.uniform(size=(batch, num_points, 2)) * scale).astype(np.float32)
        dest = (source + rng.uniform(-2, 2, size=source.shape)).astype(np.float32)
        warped, flows = sparse_image_warp(image, source, dest)
        expected_image, expected_flows = scipy_sparse_warp(image, source, dest)
        self.assertAllClose(flows, expected_flows, atol=1e-4, rtol=0)
        self.assertAllClose(warped, expected_image, atol=1e-4, rtol=0)

    def test_source_pixel_lands_on_destination(self):
        image = np.zeros([1, 20, 20, 1], np.float32)
        image[0, 5, 6, 0] = 1.0
        source = np.array([[[5.0, 6.0], [0.0, 0.0], [0.0, 19.0], [19.0, 0.0], [19.0, 19.0]]],
                          np.float32)
        dest = source.copy()
        dest[0, 0] = [9.0, 11.0]
        warped, flows = sparse_image_warp(image, source, dest)
        self.assertAllClose(flows[0, 9, 11], [4.0, 5.0], atol=1e-4)
        self.assertAllClose(warped[0, 9, 11, 0], 1.0, atol=1e-4)

    def test_source_equal_dest_is_exact_identity(self):
        rng = np.random.default_rng(0)
        image = rng.normal(size=(2, 11, 13, 3)).astype(np.float32)
        points = rng.uniform(0, 10, size=(2, 6, 2)).astype(np.float32)
        for boundary in (0, 3):
            warped, flows = sparse_image_warp(image, points, points, num_boundary_points=boundary)
            np.testing.assert_array_equal(warped.numpy(), image)
            np.testing.assert_array_equal(flows.numpy(), np.zeros([2, 11, 13, 2]))

    @parameterized.parameters((1, 4), (2, 8), (4, 16))
    def test_boundary_points_follow_tfa(self, num_boundary_points, expected_count):
        border = sparse_warp.boundary_points(9, 13, num_boundary_points, tf.float64).numpy()
        self.assertLen(border, expected_count)
        ys = np.linspace(0, 8, num_boundary_points + 1)
        xs = np.linspace(0, 12, num_boundary_points + 1)
        gy, gx = np.meshgrid(ys, xs, indexing="ij")
        on_edge = (gx == 0) | (gx == 12) | (gy == 0) | (gy == 8)
        np.testing.assert_allclose(border, np.stack([gy[on_edge], gx[on_edge]], axis=-1))

    def test_boundary_points_pin_the_border(self):
        rng = np.random.default_rng(1)
        image = rng.uniform(size=(1, 16, 16, 2)).astype(np.float32)
        source = np.array([[[7.0, 7.0], [8.0, 9.0], [6.0, 10.0]]], np.float32)
        dest = source + np.array([[[1.5, -1.0], [0.5, 0.5], [-1.0, 1.0]]], np.float32)
        warped, flows = sparse_image_warp(image, source, dest, num_boundary_points=3)
        border = sparse_warp.boundary_points(16, 16, 3, tf.float64).numpy()
        expected_image, expected_flows = scipy_sparse_warp(image, source, dest, boundary=border)
        self.assertAllClose(flows, expected_flows, atol=1e-4)
        self.assertAllClose(warped, expected_image, atol=1e-4)
        self.assertAllClose(flows[0, 0, 0], [0.0, 0.0], atol=1e-6)
        self.assertAllClose(flows[0, 15, 15], [0.0, 0.0], atol=1e-6)

    @parameterized.parameters(
        (np.float16, np.float16), (np.float32, np.float32), (np.float64, np.float64),
        (np.uint8, np.float32))
    def test_dtypes(self, image_dtype, expected_dtype):
        rng = np.random.default_rng(2)
        image = rng.integers(0, 255, size=(1, 10, 12, 3)).astype(image_dtype)
        source = rng.uniform(0, 9, size=(1, 5, 2)).astype(np.float32)
        dest = source + 1.25
        warped, _ = sparse_image_warp(image, source, dest)
        self.assertEqual(warped.dtype, expected_dtype)
        expected, _ = scipy_sparse_warp(image.astype(np.float64), source, dest)
        tolerance = 0.5 if image_dtype == np.float16 else 1e-3
        self.assertAllClose(warped.numpy().astype(np.float64), expected, atol=tolerance)

    def test_gradients_match_finite_differences(self):
        rng = np.random.default_rng(3)
        image = tf.constant(rng.uniform(size=(1, 6, 7, 1)))
        source = tf.constant(rng.uniform(1, 5, size=(1, 4, 2)))
        dest = tf.constant(source.numpy() + rng.uniform(-0.7, 0.7, size=(1, 4, 2)))
        for which in range(3):
            def f(x, which=which):
                args = [image, source, dest]
                args[which] = x
                return sparse_image_warp(*args)[0]
            theoretical, numerical = tf.test.compute_gradient(
                f, [[image, source, dest][which]], delta=1e-5)
            self.assertAllClose(theoretical, numerical, atol=1e-4)

    def test_gradient_finite_with_control_points_on_pixels(self):
        image = tf.constant(np.random.default_rng(4).uniform(size=(1, 8, 8, 1)), tf.float32)
        source = tf.constant([[[2.0, 2.0], [2.0, 5.0], [5.0, 2.0], [5.0, 5.0]]])
        dest = tf.constant([[[3.0, 2.0], [2.0, 6.0], [5.0, 1.0], [4.0, 5.0]]])
        with tf.GradientTape() as tape:
            tape.watch([image, source, dest])
            loss = tf.reduce_sum(sparse_image_warp(image, source, dest)[0] ** 2)
        for grad in tape.gradient(loss, [image, source, dest]):
            self.assertTrue(np.all(np.isfinite(grad.numpy())))

    def test_unknown_shapes_in_tf_data(self):
        rng = np.random.default_rng(5)
        sizes = [(10, 14), (7, 9), (16, 8)]
        images = [rng.uniform(size=s + (3,)).astype(np.float32) for s in sizes]
        dataset = tf.data.Dataset.from_generator(
            lambda: iter(images), output_signature=tf.TensorSpec([None, None, 3], tf.float32))

        def warp(image):
            size = tf.cast(tf.shape(image)[:2] - 1, tf.float32)
            source = tf.stack([size * 0.2, size * 0.8, size * [0.2, 0.8], size * [0.8, 0.2]])
            dest = source + [[1.0, 0.5], [-0.5, 0.0], [0.0, 0.0], [0.5, 0.5]]
            return sparse_image_warp(image[None], source[None], dest[None])[0][0]

        for got, image in zip(dataset.map(warp).batch(1), images):
            h, w = np.array(image.shape[:2]) - 1
            source = np.array([[0.2 * h, 0.2 * w], [0.8 * h, 0.8 * w], [0.2 * h, 0.8 * w],
                               [0.8 * h, 0.2 * w]], np.float32)
            dest = source + np.array([[1.0, 0.5], [-0.5, 0.0], [0.0, 0.0], [0.5, 0.5]], np.float32)
            expected, _ = scipy_sparse_warp(image[None], source[None], dest[None])
            self.assertAllClose(got, expected, atol=1e-4)

    def test_unknown_batch_and_xla_match_eager(self):
        rng = np.random.default_rng(6)
        image = rng.uniform(size=(2, 12, 12, 3)).astype(np.float32)
        source = rng.uniform(0, 11, size=(2, 6, 2)).astype(np.float32)
        dest = (source + rng.uniform(-1, 1, size=source.shape)).astype(np.float32)
        eager = sparse_image_warp(image, source, dest, num_boundary_points=2)
        specs = [tf.TensorSpec([None, 12, 12, 3]), tf.TensorSpec([None, 6, 2]),
                 tf.TensorSpec([None, 6, 2])]
        for jit in (False, True):
            fn = tf.function(lambda i, s, d: sparse_image_warp(i, s, d, num_boundary_points=2),
                             input_signature=specs, jit_compile=jit)
            got = fn(image, source, dest)
            self.assertAllClose(got[0], eager[0], atol=1e-5)
            self.assertAllClose(got[1], eager[1], atol=1e-5)

    @parameterized.named_parameters(
        ("image_rank", [1, 8, 8, 1, 1], [1, 4, 2], [1, 4, 2], ValueError, "image"),
        ("points_rank", [1, 8, 8, 1], [4, 2], [4, 2], ValueError, "source_control_point"),
        ("point_mismatch", [1, 8, 8, 1], [1, 4, 2], [1, 5, 2], ValueError, "same shape"),
        ("point_dims", [1, 8, 8, 1], [1, 4, 3], [1, 4, 3], ValueError, r"\(y, x\)"),
        ("batch_mismatch", [2, 8, 8, 1], [3, 4, 2], [3, 4, 2], ValueError, "batch size"),
    )
    def test_bad_shapes(self, image_shape, source_shape, dest_shape, error, word):
        with self.assertRaisesRegex(error, word):
            sparse_image_warp(np.zeros(image_shape, np.float32),
                              np.ones(source_shape, np.float32), np.ones(dest_shape, np.float32))

    def test_images_of_rank_2_and_3_are_a_batch_of_one_as_in_tfa(self):
        rng = np.random.default_rng(7)
        image = rng.uniform(size=(10, 12, 3)).astype(np.float32)
        source = rng.uniform(1, 9, size=(1, 5, 2)).astype(np.float32)
        dest = source + rng.uniform(-1, 1, size=source.shape).astype(np.float32)
        batched, flows = sparse_image_warp(image[None], source, dest)
        for rank, one in ((3, image), (2, image[..., 0])):
            warped, one_flows = sparse_image_warp(one, source, dest)
            self.assertEqual(warped.shape.rank, rank)
            np.testing.assert_array_equal(one_flows.numpy(), flows.numpy())
        np.testing.assert_array_equal(sparse_image_warp(image, source, dest)[0].numpy(),
                                      batched.numpy()[0])
        np.testing.assert_array_equal(sparse_image_warp(image[..., 0], source, dest)[0].numpy(),
                                      batched.numpy()[0, ..., 0])

    @parameterized.parameters(3.0, -2.0, 1.25)
    def test_points_on_one_line_moved_alike_shift_the_image_exactly(self, shift):
        # The widely copied SpecAugment recipe: control points on one time row of a
        # [1, time, freq, 1] spectrogram, all moved by (shift, 0), no boundary points. The spline
        # is not determined across the row; the minimum-norm answer is the constant shift.
        spectrogram = np.random.default_rng(8).normal(size=(1, 40, 16, 1)).astype(np.float32)
        source = np.stack([np.full(8, 17.0), np.arange(8.0)], axis=1)[None].astype(np.float32)
        dest = source + np.array([shift, 0.0], np.float32)
        warped, flows = sparse_image_warp(spectrogram, source, dest)
        expected_flow = np.broadcast_to(np.array([shift, 0.0], np.float32), flows.shape)
        np.testing.assert_array_equal(flows.numpy(), expected_flow)
        np.testing.assert_array_equal(
            warped.numpy(), deform_tf.dense_image_warp(spectrogram, expected_flow).numpy())

    def test_batch_mismatch_at_run_time_names_the_arguments(self):
        spec = tf.TensorSpec(None, tf.float32)
        fn = sparse_image_warp.get_concrete_function(spec, spec, spec)
        points = tf.ones([3, 4, 2])  # a concrete function takes tensors
        with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "batch size of `image`"):
            fn(tf.zeros([2, 8, 8, 1]), points, points)

    def test_non_finite_points(self):
        points = np.array([[[1.0, 1.0], [1.0, 6.0], [6.0, np.inf], [6.0, 6.0]]], np.float32)
        with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "source_control_point"):
            sparse_image_warp(np.zeros([1, 8, 8, 1], np.float32), points, points)

    def test_bad_num_boundary_points(self):
        points = np.ones([1, 4, 2], np.float32)
        with self.assertRaisesRegex(ValueError, "num_boundary_points"):
            sparse_image_warp(np.zeros([1, 8, 8, 1]), points, points, num_boundary_points=-1)


class RegularizationWeightTest(parameterized.TestCase, tf.test.TestCase):

    @parameterized.parameters((0.1, 0), (2.0, 0), (0.5, 2), (5.0, 1))
    def test_matches_tfa_formula_in_float64_numpy(self, weight, num_boundary_points):
        rng = np.random.default_rng(int(weight * 10) + num_boundary_points)
        height, width, batch = 11, 14, 2
        image = rng.uniform(size=(batch, height, width, 2))
        source = rng.uniform(1, 9, size=(batch, 6, 2))
        dest = source + rng.uniform(-2, 2, size=source.shape)
        warped, flows = sparse_image_warp(image, source, dest, regularization_weight=weight,
                                          num_boundary_points=num_boundary_points)
        expected = np.stack([
            _tfa_regularized_flow(d, d - s, height, width, weight, num_boundary_points)
            for s, d in zip(source, dest)])
        self.assertAllClose(flows, expected, atol=1e-8, rtol=0)
        self.assertAllClose(warped, scipy_dense_warp(image, expected), atol=1e-8, rtol=0)
        # Smoothing, not interpolation: the flow at the destinations is not dest - source.
        at_dest = [np.array([e[int(round(y)), int(round(x))] for y, x in d])
                   for e, d in zip(expected, dest)]
        self.assertGreater(np.abs(np.array(at_dest) - (dest - source)).max(), 1e-3)


def _tfa_regularized_flow(points, values, height, width, weight, num_boundary_points):
    """Oracle: tfa's `sparse_image_warp` flow, its formula written in float64 numpy.

    Zero-flow boundary points on an evenly spaced (n + 1) x (n + 1) lattice's border; the
    system [[A + weight I, B], [B^T, 0]] [w; v] = [values; 0] with A = phi(|c_i - c_j|^2),
    phi(r^2) = r^2 log(r) (r^2 floored at 1e-10 in the log), B = [c, 1]; evaluated at every
    pixel (y, x). Uncentred coordinates and a plain solve, as tfa.
    """
    if num_boundary_points:
        ys = np.linspace(0, height - 1, num_boundary_points + 1)
        xs = np.linspace(0, width - 1, num_boundary_points + 1)
        grid_x, grid_y = np.meshgrid(xs, ys)
        border = ((grid_x == 0) | (grid_x == width - 1) | (grid_y == 0) | (grid_y == height - 1))
        boundary = np.stack([grid_y[border], grid_x[border]], axis=1)
        points = np.concatenate([points, boundary])
        values = np.concatenate([values, np.zeros_like(boundary)])

    def phi(a, b):
        r2 = np.sum((a[:, None] - b[None]) ** 2, axis=-1)
        return 0.5 * r2 * np.log(np.maximum(r2, 1e-10))

    n = len(points)
    affine = np.concatenate([points, np.ones([n, 1])], axis=1)
    lhs = np.block([[phi(points, points) + weight * np.eye(n), affine],
                    [affine.T, np.zeros([3, 3])]])
    coefficients = np.linalg.solve(lhs, np.concatenate([values, np.zeros([3, 2])]))
    pixels = np.stack(np.meshgrid(np.arange(height), np.arange(width), indexing="ij"),
                      axis=-1).reshape(-1, 2).astype(np.float64)
    basis = np.concatenate([phi(pixels, points), pixels, np.ones([len(pixels), 1])], axis=1)
    return (basis @ coefficients).reshape(height, width, 2)


if __name__ == "__main__":
    tf.test.main()

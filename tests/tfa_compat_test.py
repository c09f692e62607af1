"""A tfa user's code with the import switched: traced with unknown shapes and ranks, saved as a
SavedModel, run in tf.data and under XLA, the four tfa ops give the eager results."""

import os

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

import deform_tf

UNKNOWN = tf.TensorSpec(None, tf.float32)


def _dense_inputs(rng, batch, height, width):
    return (rng.uniform(size=(batch, height, width, 3)).astype(np.float32),
            rng.uniform(-3, 3, size=(batch, height, width, 2)).astype(np.float32))


def _sparse_inputs(rng, batch, height, width):
    image = rng.uniform(size=(batch, height, width, 3)).astype(np.float32)
    source = (rng.uniform(size=(batch, 5, 2)) * [height - 1, width - 1]).astype(np.float32)
    return image, source, (source + rng.uniform(-2, 2, size=source.shape)).astype(np.float32)


def _spline_inputs(rng, batch, height, width):
    points = (rng.uniform(size=(batch, 6, 2)) * [height, width]).astype(np.float32)
    return (points, rng.normal(size=(batch, 6, 3)).astype(np.float32),
            (rng.uniform(size=(batch, 11, 2)) * [height, width]).astype(np.float32))


def _bilinear_inputs(rng, batch, height, width):
    return (rng.normal(size=(batch, height, width, 2)).astype(np.float32),
            rng.uniform(-1, max(height, width), size=(batch, 13, 2)).astype(np.float32))


# name: (op, inputs(rng, batch, height, width), Python arguments after the tensors, the name of
# the first argument, which the error for a wrong rank must give).
OPS = {
    "dense_image_warp": (deform_tf.dense_image_warp, _dense_inputs, (), "image"),
    "sparse_image_warp": (deform_tf.sparse_image_warp, _sparse_inputs, (), "image"),
    "interpolate_spline": (deform_tf.interpolate_spline, _spline_inputs, (2,), "train_points"),
    "interpolate_bilinear": (deform_tf.interpolate_bilinear, _bilinear_inputs, (), "grid"),
}
SHAPES = ((2, 9, 12), (1, 16, 7))


def _unknown_shape_function(op, python_args, num_tensors):
    """tf.function(op) with an input signature of `num_tensors` tensors of unknown shape."""
    def two(a, b):
        return op(a, b, *python_args)

    def three(a, b, c):
        return op(a, b, c, *python_args)

    return tf.function({2: two, 3: three}[num_tensors], input_signature=[UNKNOWN] * num_tensors)


def _assert_identical(result, expected):
    for got, want in zip(tf.nest.flatten(result), tf.nest.flatten(expected)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


class TfaCompatTest(parameterized.TestCase, tf.test.TestCase):

    @parameterized.named_parameters(*((name, name) for name in OPS))
    def test_concrete_function_of_unknown_rank_is_bit_identical_to_eager(self, name):
        op, make_inputs, python_args, _ = OPS[name]
        rng = np.random.default_rng(0)
        num_tensors = len(make_inputs(rng, *SHAPES[0]))
        concrete = op.get_concrete_function(*([UNKNOWN] * num_tensors), *python_args)
        for shape in SHAPES:
            inputs = make_inputs(rng, *shape)
            _assert_identical(concrete(*(tf.constant(x) for x in inputs)),
                              op(*inputs, *python_args))

    @parameterized.named_parameters(*((name, name) for name in OPS))
    def test_partly_known_shapes_are_bit_identical_to_eager(self, name):
        op, make_inputs, python_args, _ = OPS[name]
        inputs = make_inputs(np.random.default_rng(1), *SHAPES[0])
        # Batch unknown, the rest known; then every size unknown at a known rank.
        for known in (True, False):
            specs = [tf.TensorSpec([None] + (list(x.shape[1:]) if known else [None] * (x.ndim - 1)),
                                   tf.float32) for x in inputs]
            traced = tf.function(lambda *args: op(*args, *python_args), input_signature=specs)
            _assert_identical(traced(*inputs), op(*inputs, *python_args))

    @parameterized.named_parameters(*((name, name) for name in OPS))
    def test_wrong_rank_at_run_time_names_the_argument(self, name):
        op, make_inputs, python_args, first_argument = OPS[name]
        inputs = [tf.constant(x) for x in make_inputs(np.random.default_rng(2), *SHAPES[0])]
        concrete = op.get_concrete_function(*([UNKNOWN] * len(inputs)), *python_args)
        inputs[0] = inputs[0][0, ..., 0]  # two axes too few (a 2-D image for sparse_image_warp)
        if name == "sparse_image_warp":
            inputs[0] = inputs[0][0]  # 1-D
        with self.assertRaisesRegex(tf.errors.InvalidArgumentError, first_argument):
            concrete(*inputs)

    def test_saved_model_with_unknown_shape_signatures_is_bit_identical_to_eager(self):
        module = tf.Module()
        for name, (op, make_inputs, python_args, _) in OPS.items():
            num_tensors = len(make_inputs(np.random.default_rng(0), *SHAPES[0]))
            setattr(module, name, _unknown_shape_function(op, python_args, num_tensors))
        path = os.path.join(self.get_temp_dir(), "tfa_ops")
        tf.saved_model.save(module, path)
        loaded = tf.saved_model.load(path)
        rng = np.random.default_rng(3)
        for name, (op, make_inputs, python_args, _) in OPS.items():
            for shape in SHAPES:
                inputs = make_inputs(rng, *shape)
                _assert_identical(getattr(loaded, name)(*inputs), op(*inputs, *python_args))

    def test_constant_image_through_an_unknown_batch_trace_stays_exact(self):
        rng = np.random.default_rng(4)
        image = np.ones([3, 10, 11, 2], np.float32)
        source = rng.uniform(0, 9, size=(3, 5, 2)).astype(np.float32)
        dest = (source + rng.uniform(-3, 3, size=source.shape)).astype(np.float32)
        specs = [tf.TensorSpec([None, 10, 11, 2]), tf.TensorSpec([None, 5, 2]),
                 tf.TensorSpec([None, 5, 2])]
        traced = tf.function(deform_tf.sparse_image_warp, input_signature=specs)
        for warp in (deform_tf.sparse_image_warp, traced):
            np.testing.assert_array_equal(warp(image, source, dest)[0].numpy(), image)

    def test_interpolate_bilinear_in_tf_data_equals_eager(self):
        rng = np.random.default_rng(5)
        grids = [rng.normal(size=(h, w, 2)).astype(np.float32) for h, w in ((5, 7), (9, 4))]
        points = rng.uniform(-1, 8, size=(6, 2)).astype(np.float32)
        dataset = tf.data.Dataset.from_generator(
            lambda: iter(grids), output_signature=tf.TensorSpec([None, None, 2], tf.float32))
        dataset = dataset.map(lambda g: deform_tf.interpolate_bilinear(g[None], points[None])[0])
        for got, grid in zip(dataset, grids):
            np.testing.assert_array_equal(
                got.numpy(), deform_tf.interpolate_bilinear(grid[None], points[None])[0].numpy())

    def test_xla_differs_from_eager_by_float_rounding_only(self):
        # The bound documented in the README: XLA contracts multiply-adds (one rounding less).
        rng = np.random.default_rng(6)
        image, source, dest = _sparse_inputs(rng, 4, 48, 40)
        eager = deform_tf.sparse_image_warp(image, source, dest, num_boundary_points=2)
        compiled = tf.function(
            lambda *args: deform_tf.sparse_image_warp(*args, num_boundary_points=2),
            jit_compile=True)(image, source, dest)
        self.assertAllClose(compiled[1], eager[1], atol=1e-6, rtol=0)  # flows, pixels
        self.assertAllClose(compiled[0], eager[0], atol=2.5e-7, rtol=0)  # values in [0, 1)


    def test_tfa_image_namespace_after_import_as_tfa(self):
        import deform_tf as tfa  # pylint: disable=import-outside-toplevel,reimported
        for name in OPS:
            self.assertIs(getattr(tfa.image, name), getattr(deform_tf, name))

    def test_tfa_unknown_shape(self):
        # tfa's own test: a concrete function traced with unknown shapes and the default
        # `indexing`, queries of batch 1 against grids of several batch sizes.
        query_points = tf.constant([[0.0, 0.0], [0.0, 1.0], [0.5, 2.0], [1.5, 1.5]],
                                   shape=[1, 4, 2])
        fn = deform_tf.image.interpolate_bilinear.get_concrete_function(
            tf.TensorSpec(shape=None, dtype=tf.float32),
            tf.TensorSpec(shape=None, dtype=tf.float32))
        for shape in (2, 4, 3, 6), (6, 2, 4, 3), (1, 2, 4, 3):
            image = tf.ones(shape=shape)
            res = fn(image, query_points)
            self.assertEqual(res.shape, (shape[0], 4, shape[3]))
            np.testing.assert_array_equal(res.numpy(), np.ones(res.shape, np.float32))

    def test_tfa_unknown_shapes_called_by_keyword(self):
        # tfa's dense_image_warp test calls its concrete function with keyword arguments.
        fn = deform_tf.image.dense_image_warp.get_concrete_function(
            tf.TensorSpec(shape=None, dtype=tf.float32),
            tf.TensorSpec(shape=None, dtype=tf.float32))
        image, flow = _dense_inputs(np.random.default_rng(7), 3, 4, 5)
        np.testing.assert_array_equal(
            fn(image=tf.constant(image), flow=tf.constant(flow)).numpy(),
            deform_tf.dense_image_warp(image, flow).numpy())


if __name__ == "__main__":
    tf.test.main()

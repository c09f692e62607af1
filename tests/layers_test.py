"""Tests of the deformation layers (`RandomTPSDeformation`, `RandomDiffeo`) in the pattern of
Keras' own preprocessing-layer tests: training switch, tf.data, single images, dict inputs with
masks, keypoints and boxes (against scipy and pixel oracles), fill modes, serialization."""

import os

from absl.testing import parameterized
import keras
import numpy as np
from scipy import ndimage
import tensorflow as tf

import deform_tf
from deform_tf import RandomDiffeo
from deform_tf import RandomTPSDeformation


def _mean_abs_diff(a, b):
    return float(np.mean(np.abs(np.asarray(a) - np.asarray(b))))


def _images(batch=4, size=16, channels=3, seed=0):
    return np.random.default_rng(seed).uniform(size=(batch, size, size, channels)).astype(
        np.float32)


class RandomTPSDeformationTest(parameterized.TestCase, tf.test.TestCase):

    def test_deforms_when_training_and_not_in_inference(self):
        layer = RandomTPSDeformation(3, 2.0, seed=1)
        images = _images()
        self.assertGreater(_mean_abs_diff(layer(images, training=True), images), 1e-3)
        np.testing.assert_array_equal(layer(images, training=False).numpy(), images)

    def test_apply_in_inference(self):
        layer = RandomTPSDeformation(3, 2.0, seed=1, apply_in_inference=True)
        images = _images()
        self.assertGreater(_mean_abs_diff(layer(images, training=False), images), 1e-3)

    def test_fresh_deformation_per_call_and_explicit_seed(self):
        layer = RandomTPSDeformation(3, 2.0, seed=1)
        images = _images()
        a, b = layer(images), layer(images)
        self.assertGreater(_mean_abs_diff(a, b), 1e-3)
        explicit = layer(images, seed=tf.constant([4, 5]))
        self.assertAllEqual(explicit, deform_tf.random_tps_deformation(images, 3, 2.0, [4, 5]))

    def test_same_layer_seed_same_sequence(self):
        images = _images()
        first = [RandomTPSDeformation(3, 2.0, seed=7)(images) for _ in range(2)]
        self.assertAllEqual(first[0], first[1])

    def test_inside_a_model_follows_training_flag(self):
        inputs = keras.Input([16, 16, 3])
        outputs = RandomTPSDeformation(3, 2.0, seed=3)(inputs)
        model = keras.Model(inputs, outputs)
        images = _images()
        np.testing.assert_array_equal(model.predict(images, verbose=0), images)
        np.testing.assert_array_equal(model(images, training=False).numpy(), images)
        self.assertGreater(_mean_abs_diff(model(images, training=True), images), 1e-3)

    def test_as_tf_data_map_function(self):
        layer = RandomTPSDeformation(3, 2.0, seed=2)
        images = _images(batch=6)
        dataset = tf.data.Dataset.from_tensor_slices(images).batch(3).map(layer)
        batches = list(dataset.as_numpy_iterator())
        self.assertLen(batches, 2)
        self.assertEqual(batches[0].shape, (3, 16, 16, 3))
        self.assertGreater(np.abs(np.concatenate(batches) - images).mean(), 1e-3)
        # Reproducible per example through explicit seeds.
        seeded = tf.data.Dataset.from_tensor_slices(images).enumerate().map(
            lambda i, x: layer(x[None], seed=tf.stack([tf.constant(0, tf.int64), i]))[0])
        again = list(seeded.as_numpy_iterator())
        self.assertAllEqual(again, list(seeded.as_numpy_iterator()))

    def test_uint8_input_returns_float32(self):
        images = (_images() * 255).astype(np.uint8)
        layer = RandomTPSDeformation(3, 0.0, seed=2)
        for training in (True, False):
            got = layer(images, training=training)
            self.assertEqual(got.dtype, tf.float32)
            np.testing.assert_array_equal(got.numpy(), images.astype(np.float32))

    def test_config_round_trip(self):
        layer = RandomTPSDeformation((3, 4), 1.5, seed=9, apply_in_inference=True, name="tps")
        clone = RandomTPSDeformation.from_config(layer.get_config())
        self.assertEqual(clone.grid_size, (3, 4))
        self.assertEqual(clone.strength, 1.5)
        self.assertEqual(clone.seed, 9)
        self.assertTrue(clone.apply_in_inference)
        self.assertEqual(clone.name, "tps")

    def test_model_save_and_load(self):
        inputs = keras.Input([16, 16, 3])
        x = RandomTPSDeformation(3, 2.0, seed=3, name="deform")(inputs)
        outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
        model = keras.Model(inputs, outputs)
        path = os.path.join(self.get_temp_dir(), "model.keras")
        model.save(path)
        loaded = keras.models.load_model(path)
        self.assertIsInstance(loaded.get_layer("deform"), RandomTPSDeformation)
        self.assertEqual(loaded.get_layer("deform").get_config()["strength"], 2.0)
        images = _images()
        self.assertAllClose(loaded.predict(images, verbose=0), model.predict(images, verbose=0))

    def test_trains_with_fit_under_xla(self):
        inputs = keras.Input([16, 16, 3])
        x = RandomTPSDeformation(3, 2.0, seed=3)(inputs)
        outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
        model = keras.Model(inputs, outputs)
        model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      jit_compile=True)
        history = model.fit(_images(batch=8), np.arange(8) % 2, epochs=2, batch_size=4,
                            verbose=0)
        self.assertTrue(np.all(np.isfinite(history.history["loss"])))

    @parameterized.named_parameters(
        ("grid", dict(grid_size=1, strength=1.0), "grid_size"),
        ("strength", dict(grid_size=3, strength=-2.0), "strength"),
    )
    def test_bad_arguments(self, kwargs, word):
        with self.assertRaisesRegex(ValueError, word):
            RandomTPSDeformation(**kwargs)


LAYERS = {
    "tps": lambda **kw: RandomTPSDeformation(3, kw.pop("amount", 2.0), **kw),
    "diffeo": lambda **kw: RandomDiffeo(4, temperature=kw.pop("amount", 0.01), **kw),
}


class PreprocessingConventionsTest(parameterized.TestCase, tf.test.TestCase):

    @parameterized.named_parameters(("tps", "tps"), ("diffeo", "diffeo"))
    def test_single_images_in_a_dataset_map_equal_the_batch(self, name):
        layer = LAYERS[name](seed=1)
        images = _images(batch=3)
        seeds = tf.constant([[0, 1], [0, 2], [0, 3]])
        dataset = tf.data.Dataset.from_tensor_slices((images, seeds)).map(
            lambda x, s: layer(x, seed=s))
        singles = np.stack(list(dataset.as_numpy_iterator()))
        self.assertEqual(singles.shape, images.shape)
        self.assertAllClose(singles, layer(images, seed=seeds), atol=1e-6, rtol=0)
        self.assertGreater(_mean_abs_diff(singles, images), 1e-3)

    @parameterized.named_parameters(("tps", "tps"), ("diffeo", "diffeo"))
    def test_inference_mode_is_a_no_op_on_every_entry(self, name):
        layer = LAYERS[name](seed=1, bounding_box_format="xyxy")
        data = _dict_input(batch=2)
        got = layer(dict(data), training=False)
        for key in ("images", "segmentation_masks", "keypoints"):
            np.testing.assert_array_equal(np.asarray(got[key]), data[key])
        np.testing.assert_array_equal(got["bounding_boxes"]["boxes"],
                                      data["bounding_boxes"]["boxes"])

    @parameterized.named_parameters(("tps", "tps", 0.0), ("diffeo", "diffeo", 0.0),
                                    ("tps_range", "tps", (0.0, 0.0)))
    def test_zero_strength_is_the_identity(self, name, amount):
        layer = LAYERS[name](amount=amount, seed=1, bounding_box_format="xyxy")
        data = _dict_input(batch=2)
        got = layer(dict(data))
        for key in ("images", "segmentation_masks"):
            np.testing.assert_array_equal(np.asarray(got[key]), data[key])
        self.assertAllClose(got["keypoints"], data["keypoints"], atol=1e-5, rtol=0)
        self.assertAllClose(got["bounding_boxes"]["boxes"], data["bounding_boxes"]["boxes"],
                            atol=1e-5, rtol=0)

    def test_probability_deforms_some_examples_and_keeps_the_others_exactly(self):
        images = _images(batch=12)
        seeds = tf.stack([tf.zeros([12], tf.int32), tf.range(12)], axis=1)
        never = RandomTPSDeformation(3, 2.0, probability=0.0)(images, seed=seeds)
        np.testing.assert_array_equal(never.numpy(), images)
        half = RandomTPSDeformation(3, 2.0, probability=0.5)(images, seed=seeds).numpy()
        always = RandomTPSDeformation(3, 2.0)(images, seed=seeds).numpy()
        kept = [np.array_equal(h, x) for h, x in zip(half, images)]
        self.assertBetween(sum(kept), 2, 10)
        for h, a, k in zip(half, always, kept):
            if not k:  # the deformed ones are the deformation drawn with probability 1
                np.testing.assert_array_equal(h, a)

    def test_strength_range_draws_one_strength_per_example(self):
        layer = RandomTPSDeformation(3, (0.5, 2.0))
        images = _images(batch=8)
        seed = tf.constant([3, 4])
        ranged = layer.get_random_transformation(images, seed=seed)["source_offsets"].numpy()
        unit = RandomTPSDeformation(3, 1.0).get_random_transformation(
            images, seed=seed)["source_offsets"].numpy()
        ratios = ranged / unit  # each example's strength, the same at all its offsets
        self.assertAllClose(ratios, np.broadcast_to(ratios[:, :1, :1], ratios.shape), rtol=1e-5)
        self.assertTrue(np.all((ratios >= 0.5) & (ratios <= 2.0)))
        self.assertGreater(np.ptp(ratios[:, 0, 0]), 0.3)

    @parameterized.named_parameters(("tps", "tps"), ("diffeo", "diffeo"))
    def test_masks_move_with_the_images_by_the_nearest_pixel(self, name):
        layer = LAYERS[name](amount=3.0 if name == "tps" else 0.02, fill_mode="constant",
                             fill_value=7.0)
        data = _dict_input(batch=2, size=12)
        transformation = layer.get_random_transformation(data, seed=tf.constant([5, 6]))
        flow = layer.flow(transformation).numpy()
        masks = layer.transform_segmentation_masks(data["segmentation_masks"], transformation)
        images = layer.transform_images(data["images"], transformation)
        self.assertEqual(masks.dtype, tf.int32)
        np.testing.assert_array_equal(masks.numpy(), _scipy_warp(
            data["segmentation_masks"], flow, order=0, mode="grid-constant", cval=7))
        self.assertAllClose(images, _scipy_warp(data["images"], flow, order=1,
                                                mode="grid-constant", cval=7.0), atol=1e-5)

    @parameterized.named_parameters(("tps", "tps"), ("diffeo", "diffeo"))
    def test_the_content_at_a_keypoint_lands_on_the_moved_keypoint(self, name):
        # Channels 0 and 1 hold each pixel's own (x, y) (bilinear resampling reproduces linear
        # ramps exactly), so the warped image, read by scipy at the moved keypoint, must give
        # the keypoint's original position; channel 2, a bright pixel at the keypoint, must peak
        # at the pixel nearest to the moved keypoint.
        size, batch = 24, 6
        layer = LAYERS[name](amount=3.0 if name == "tps" else 0.002)
        rng = np.random.default_rng(3)
        cols, rows = rng.integers(6, size - 6, size=(2, batch))
        images = np.zeros([batch, size, size, 3], np.float32)
        images[..., 1], images[..., 0] = np.mgrid[:size, :size] + 0.5
        images[np.arange(batch), rows, cols, 2] = 1.0
        keypoints = np.stack([cols + 0.5, rows + 0.5], axis=-1)[:, None].astype(np.float32)
        got = layer({"images": images, "keypoints": keypoints}, seed=tf.constant([7, 8]))
        moved = got["keypoints"].numpy()[:, 0]
        self.assertGreater(np.abs(moved - keypoints[:, 0]).max(), 1.0)  # it did move
        for image, point, original in zip(got["images"].numpy(), moved, keypoints[:, 0]):
            at = [ndimage.map_coordinates(image[..., c].astype(np.float64),
                                          [[point[1] - 0.5], [point[0] - 0.5]], order=1)[0]
                  for c in (0, 1)]
            self.assertAllClose(at, original, atol=1e-3)
            peak_row, peak_col = np.unravel_index(np.argmax(image[..., 2]), (size, size))
            self.assertAllClose([peak_col + 0.5, peak_row + 0.5], point, atol=0.5)

    @parameterized.parameters("xyxy", "rel_yxyx", "center_xywh")
    def test_a_box_becomes_the_box_of_its_moved_outline(self, box_format):
        size = 24
        layer = RandomTPSDeformation(3, 3.0, bounding_box_format=box_format)
        images = np.zeros([2, size, size, 1], np.float32)
        xyxy = np.array([[[4.0, 6.0, 15.0, 19.0]], [[8.0, 3.0, 20.0, 12.0]]], np.float32)
        for image, (x1, y1, x2, y2) in zip(images, xyxy[:, 0].astype(int)):
            image[y1:y2, x1:x2] = 1.0
        boxes = keras.utils.bounding_boxes.convert_format(
            xyxy, source="xyxy", target=box_format, height=size, width=size)
        data = {"images": images,
                "bounding_boxes": {"boxes": boxes, "labels": np.array([[1], [2]])}}
        got = layer(data, seed=tf.constant([9, 10]))
        moved = keras.utils.bounding_boxes.convert_format(
            got["bounding_boxes"]["boxes"], source=box_format, target="xyxy", height=size,
            width=size).numpy()
        np.testing.assert_array_equal(got["bounding_boxes"]["labels"], [[1], [2]])
        for image, box in zip(got["images"].numpy(), moved[:, 0]):
            rows, cols = np.nonzero(image[..., 0] > 0.5)  # the moved rectangle's pixels
            self.assertAllClose(box, [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1],
                                atol=1.0)

    def test_single_example_dict_in_a_dataset_map(self):
        layer = RandomTPSDeformation(3, 2.0, bounding_box_format="xyxy", seed=4)
        data = _dict_input(batch=3)
        dataset = tf.data.Dataset.from_tensor_slices(data).map(layer)
        examples = list(dataset.as_numpy_iterator())
        self.assertLen(examples, 3)
        self.assertEqual(examples[0]["images"].shape, (16, 16, 3))
        self.assertEqual(examples[0]["segmentation_masks"].shape, (16, 16, 1))
        self.assertEqual(examples[0]["keypoints"].shape, (2, 2))
        self.assertEqual(examples[0]["bounding_boxes"]["boxes"].shape, (1, 4))
        self.assertEqual(examples[0]["labels"], data["labels"][0])
        self.assertTrue(set(np.unique(examples[0]["segmentation_masks"])) <= {0, 1, 2})

    @parameterized.parameters("constant", "reflect")
    def test_fill_modes_are_the_dense_warps(self, fill_mode):
        layer = RandomTPSDeformation(3, 4.0, fill_mode=fill_mode, fill_value=-1.0)
        images = _images(batch=2)
        transformation = layer.get_random_transformation(images, seed=tf.constant([1, 1]))
        expected = deform_tf.dense_image_warp(images, layer.flow(transformation),
                                              fill_mode=fill_mode, fill_value=-1.0)
        self.assertAllClose(layer.transform_images(images, transformation), expected,
                            atol=1e-5, rtol=0)

    def test_diffeo_equals_random_diffeo_and_matches_its_displacement(self):
        images = _images(batch=2)
        got = RandomDiffeo(5, temperature=0.01)(images, seed=tf.constant([1, 2]))
        np.testing.assert_array_equal(
            got.numpy(), deform_tf.random_diffeo(images, 0.01, 5, tf.constant([1, 2])).numpy())
        layer = RandomDiffeo(5, displacement=1.5)
        transformation = layer.get_random_transformation(_images(batch=64), seed=tf.constant([3]
                                                                                            * 2))
        flow = layer.flow(transformation).numpy()
        rms = np.sqrt(np.mean(np.sum(np.square(flow), axis=-1)))  # Monte Carlo over 64 draws
        self.assertAllClose(rms, 1.5, rtol=0.12)

    @parameterized.named_parameters(("tps", "tps"), ("diffeo", "diffeo"))
    def test_config_round_trip_with_ranges_and_options(self, name):
        layer = LAYERS[name](amount=(0.5, 1.5) if name == "tps" else (0.001, 0.01),
                             probability=0.25, fill_mode="reflect", fill_value=2.0,
                             bounding_box_format="yxyx", seed=3, name="deform")
        clone = type(layer).from_config(layer.get_config())
        self.assertEqual(clone.get_config(), layer.get_config())
        images = _images()
        self.assertAllEqual(clone(images, seed=tf.constant([1, 2])),
                            layer(images, seed=tf.constant([1, 2])))

    def test_diffeo_model_save_and_load(self):
        inputs = keras.Input([16, 16, 3])
        x = RandomDiffeo(3, displacement=(0.5, 1.0), name="deform")(inputs)
        model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
        path = os.path.join(self.get_temp_dir(), "diffeo.keras")
        model.save(path)
        loaded = keras.models.load_model(path).get_layer("deform")
        self.assertIsInstance(loaded, RandomDiffeo)
        self.assertEqual(loaded.get_config()["displacement"], [0.5, 1.0])

    @parameterized.named_parameters(
        ("probability", lambda: RandomTPSDeformation(3, 1.0, probability=1.5), "probability"),
        ("fill_mode", lambda: RandomTPSDeformation(3, 1.0, fill_mode="wrap"), "fill_mode"),
        ("range", lambda: RandomTPSDeformation(3, (2.0, 1.0)), "strength"),
        ("both", lambda: RandomDiffeo(3, temperature=0.1, displacement=1.0), "exactly one"),
        ("neither", lambda: RandomDiffeo(3), "exactly one"),
        ("cutoff", lambda: RandomDiffeo(0, temperature=0.1), "cutoff"),
    )
    def test_bad_layer_arguments(self, make, word):
        with self.assertRaisesRegex(ValueError, word):
            make()

    def test_known_shapes_build_no_run_time_assert(self):
        # XLA drops asserts (logging "Ignoring Assert operator"): with the batch size known
        # when traced, per-example seeds are checked then, and no assert is built.
        specs = [tf.TensorSpec([2, 16, 16, 3]), tf.TensorSpec([2, 2], tf.int32)]
        layer = RandomTPSDeformation(3, (1.0, 2.0), probability=0.5)
        diffeo = RandomDiffeo(3, 0.01)
        for fn in (lambda x, s: layer(x, seed=s), lambda x, s: diffeo(x, seed=s),
                   lambda x, s: deform_tf.random_tps_deformation(x, 3, 2.0, s)):
            graph = tf.function(fn).get_concrete_function(*specs).graph
            self.assertEmpty([op.name for op in graph.get_operations() if op.type == "Assert"])

    def test_boxes_without_a_format_are_refused(self):
        with self.assertRaisesRegex(ValueError, "bounding_box_format"):
            RandomTPSDeformation(3, 1.0)(_dict_input(batch=1))


def _dict_input(batch, size=16):
    rng = np.random.default_rng(batch)
    return {
        "images": _images(batch=batch, size=size),
        "segmentation_masks": rng.integers(0, 3, size=(batch, size, size, 1)).astype(np.int32),
        "keypoints": rng.uniform(2, size - 2, size=(batch, 2, 2)).astype(np.float32),
        "bounding_boxes": {"boxes": np.tile(np.array([[[3.0, 4.0, 11.0, 12.0]]], np.float32),
                                            [batch, 1, 1]),
                           "labels": np.ones([batch, 1], np.int32)},
        "labels": np.arange(batch, dtype=np.int32),
    }


def _scipy_warp(images, flow, order, mode, cval):
    """Oracle: every channel sampled at (y, x) - flow by scipy's `map_coordinates`."""
    grid = np.mgrid[:images.shape[1], :images.shape[2]].astype(np.float64)
    return np.stack([np.stack([
        ndimage.map_coordinates(image[..., c], grid - np.moveaxis(f, -1, 0).astype(np.float64),
                                order=order, mode=mode, cval=cval)
        for c in range(images.shape[-1])], axis=-1) for image, f in zip(images, flow)])


if __name__ == "__main__":
    tf.test.main()

"""`deform_tf.deformation`: one deformation spec and one seed derivation for every caller.

The seeds are the documented ones (written out here, not taken from the module); a training
pipeline's per-example deformation is the spec's; and the measurement during training
(`experiments.training.measure`, on normalized images) and `deform_tf.profile.profile` (on
pixels, with the normalization as its input convention) measure the same thing for one seed.
"""

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

import deform_tf
from deform_tf import deformation
from deform_tf import profile
from deform_tf import reference_models
from deform_tf import sensitivity
from experiments import training
from pipelines import core

MEAN, STD = 0.2860, 0.3530  # an affine normalization of pixels / 255, as the pipelines do


def _pixels(count=6, size=16, seed=0):
    """Smooth random images, float32 pixels 0..255 [count, size, size, 1]."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (count, 4, 4, 1)).astype(np.float32)
    return tf.image.resize(coarse, (size, size), method="bicubic").numpy().clip(0, 255)


class SeedsTest(parameterized.TestCase, tf.test.TestCase):

    @parameterized.parameters(0, 3, 2**31 - 1)
    def test_documented_seeds(self, seed):
        self.assertAllEqual(deformation.measurement_seed(seed), [seed, 1000003])
        self.assertEqual(deformation.noise_seed(seed), (seed, 7))

    def test_measure_draws_from_the_measurement_seed(self):
        images = _pixels()
        measured = deformation.Deformation("tps", 3, 1.5, seed=4).measure(16, 16)(images)
        direct = deform_tf.random_tps_deformation(images, 3, 1.5,
                                                  tf.constant([4, 1000003], tf.int64))
        self.assertAllEqual(measured, direct)
        other = deformation.Deformation("tps", 3, 1.5, seed=5).measure(16, 16)(images)
        self.assertNotAllClose(measured, other)

    def test_sizes_left_out_follow_the_image(self):
        spec = deformation.Deformation(seed=1)
        self.assertEqual(spec.tps_for(32, 32), (3, 2.0))
        self.assertEqual(spec.tps_for(224, 224), (5, 10.0))

    def test_diffeo_spec_applies_per_example_seeds(self):
        images = _pixels()
        seeds = tf.constant([[9, k] for k in range(6)], tf.int64)
        spec = deformation.Deformation("diffeo", temperature=0.01, cutoff=3)
        self.assertAllEqual(spec.apply(images, seeds),
                            deform_tf.random_diffeo(images, 0.01, 3, seeds))

    @parameterized.parameters(
        (dict(kind="elastic"), "kind"), (dict(grid_size=1), "grid"),
        (dict(strength=-1.0), "strength"))
    def test_bad_specs_are_refused(self, kwargs, message):
        with self.assertRaisesRegex(ValueError, message):
            deformation.Deformation(**kwargs)


class PipelineTest(tf.test.TestCase):

    def test_training_example_k_is_deformed_with_seed_s_k(self):
        images = tf.constant(_pixels())
        ids = tf.constant([0, 1, 2, 10, 11, 12], tf.int64)
        spec = core.Deformation("tps", 3, 2.0)
        got = core.deform_batch(images, ids, spec, seed=5)
        for row, k in enumerate([0, 1, 2, 10, 11, 12]):
            alone = deform_tf.random_tps_deformation(images[row:row + 1], 3, 2.0,
                                                     tf.constant([[5, k]], tf.int64))
            self.assertAllClose(got[row:row + 1], alone, atol=1e-4)


class SameSeedSameMeasurementTest(tf.test.TestCase):

    def test_training_measurement_and_profile_agree(self):
        model = reference_models.lenet(input_shape=(16, 16, 1), num_classes=4, width=0.5,
                                       seed=2)
        pixels = _pixels(count=8, seed=1)
        normalized = (pixels / 255.0 - MEAN) / STD
        spec = deformation.Deformation("tps", 3, 1.0, seed=3)
        during_training = training.measure(model, sensitivity.RepresentationRunner(model),
                                           tf.constant(normalized), spec, step=0)
        rows = profile.profile(
            model, pixels, spec.measure(16, 16),
            preprocess=lambda x: (x / 255.0 - MEAN) / STD, noise_seed=deformation.noise_seed(3))
        by_point = {row.point.name: row for row in rows}
        trained = during_training["sensitivity_cosine"]
        for name, value in zip(trained["layers"], trained["sensitivity"]):
            self.assertIn(name, by_point)
            self.assertAllClose(by_point[name].sensitivity_cosine, value, rtol=2e-4, atol=1e-6,
                                msg=name)
        stability = during_training["relative_stability"]
        for name, value in zip(stability["layers"], stability["relative_stability"]):
            self.assertAllClose(by_point[name].relative_stability, value, rtol=2e-3, msg=name)


if __name__ == "__main__":
    tf.test.main()

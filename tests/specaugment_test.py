"""Tests of SpecAugment's `time_warp` recipe against a scipy 1-D thin-plate-spline oracle."""

from absl.testing import parameterized
import numpy as np
from scipy import interpolate
import tensorflow as tf

from deform_tf import specaugment
from deform_tf import time_warp


def scipy_time_warp(spectrogram, source, dest):
    """Oracle: the 1-D thin-plate spline of dest - source at dest (scipy), each bin resampled
    linearly along time with the same flow (np.interp, edges replicated).

    spectrogram [batch, time, freq, channels]; source, dest [batch, 3, 2] (time, 0).
    """
    batch, frames = spectrogram.shape[:2]
    times = np.arange(frames, dtype=np.float64)
    out = np.empty(spectrogram.shape)
    for b in range(batch):
        at = dest[b, :, :1].astype(np.float64)
        flow = interpolate.RBFInterpolator(
            at, (dest[b, :, 0] - source[b, :, 0]).astype(np.float64),
            kernel="thin_plate_spline", degree=1)(times[:, None])
        columns = spectrogram[b].reshape(frames, -1).astype(np.float64)
        warped = [np.interp(times - flow, times, column) for column in columns.T]
        out[b] = np.stack(warped, axis=1).reshape(spectrogram.shape[1:])
    return out


class TimeWarpTest(parameterized.TestCase, tf.test.TestCase):

    @parameterized.parameters((2, 40, 6, 1, 5.0, [1, 2]), (1, 100, 20, 2, 30.0, [7, 9]),
                              (3, 25, 1, 1, 2.5, [[1, 1], [2, 2], [3, 3]]))
    def test_matches_a_one_dimensional_spline_oracle(self, batch, frames, bins, channels, w,
                                                     seed):
        spectrogram = np.random.default_rng(frames).normal(size=(batch, frames, bins, channels))
        spectrogram = spectrogram.astype(np.float32)
        source, dest = (p.numpy() for p in specaugment.time_warp_control_points(
            batch, frames, w, seed))
        got = time_warp(spectrogram, w, seed)
        self.assertAllClose(got, scipy_time_warp(spectrogram, source, dest), atol=2e-5, rtol=0)

    def test_anchor_lands_on_its_destination_and_the_end_frames_stay(self):
        # A spectrogram whose value is the frame index: the output at frame y is the source
        # time y - flow(y); the first and last frames are pinned (to float rounding).
        frames = 50
        ramp = np.broadcast_to(np.arange(frames, dtype=np.float32)[None, :, None, None],
                               (4, frames, 3, 1))
        warped = time_warp(ramp, 8.0, [5, 6]).numpy()
        self.assertAllClose(warped[:, [0, -1]], ramp[:, [0, -1]], atol=1e-5, rtol=0)
        np.testing.assert_array_equal(warped, np.broadcast_to(warped[:, :, :1], warped.shape))
        self.assertTrue(np.all(np.diff(warped[:, :, 0, 0], axis=1) > 0))  # no folding
        source, dest = (p.numpy() for p in specaugment.time_warp_control_points(
            4, frames, 8.0, [5, 6]))
        for b in range(4):
            anchor, landing = source[b, 1, 0], dest[b, 1, 0]
            # Linear interpolation of the warped ramp at the landing time gives the anchor.
            self.assertAllClose(np.interp(landing, np.arange(frames), warped[b, :, 0, 0]),
                                anchor, atol=0.05)

    def test_anchor_and_shift_ranges(self):
        source, dest = (p.numpy() for p in specaugment.time_warp_control_points(
            400, 60, 10.0, [3, 3]))
        anchor, shift = source[:, 1, 0], dest[:, 1, 0] - source[:, 1, 0]
        self.assertBetween(anchor.min(), 10.0, 12.0)
        self.assertBetween(anchor.max(), 47.0, 49.0)
        self.assertBetween(shift.min(), -10.0, -9.0)
        self.assertBetween(shift.max(), 9.0, 10.0)
        np.testing.assert_array_equal(source[:, [0, 2]], dest[:, [0, 2]])
        np.testing.assert_array_equal(source[:, :, 1], np.zeros([400, 3]))
        short, _ = specaugment.time_warp_control_points(5, 15, 10.0, [3, 3])
        np.testing.assert_array_equal(short.numpy()[:, 1, 0], np.full(5, 7.0))

    @parameterized.parameters(2, 3, 4)
    def test_zero_w_is_the_identity(self, rank):
        spectrogram = np.random.default_rng(rank).normal(size=(2, 30, 8, 2)).astype(np.float32)
        spectrogram = {2: spectrogram[0, ..., 0], 3: spectrogram[0], 4: spectrogram}[rank]
        np.testing.assert_array_equal(time_warp(spectrogram, 0.0, [1, 2]).numpy(), spectrogram)

    def test_stateless_seeds(self):
        spectrogram = np.random.default_rng(1).normal(size=(3, 30, 5, 1)).astype(np.float32)
        first = time_warp(spectrogram, 6.0, [4, 4]).numpy()
        np.testing.assert_array_equal(time_warp(spectrogram, 6.0, [4, 4]).numpy(), first)
        self.assertGreater(np.abs(time_warp(spectrogram, 6.0, [4, 5]).numpy() - first).max(), 0)
        # One seed per spectrogram: each result depends on its own seed only.
        seeds = np.array([[1, 10], [2, 20], [3, 30]])
        batched = time_warp(spectrogram, 6.0, seeds).numpy()
        for b in range(3):
            alone = time_warp(spectrogram[b:b + 1], 6.0, seeds[b:b + 1]).numpy()
            np.testing.assert_array_equal(batched[b:b + 1], alone)

    def test_in_tf_data_with_unknown_lengths_equals_eager(self):
        rng = np.random.default_rng(2)
        spectrograms = [rng.normal(size=(n, 6)).astype(np.float32) for n in (20, 33, 27)]
        dataset = tf.data.Dataset.from_generator(
            lambda: iter(spectrograms), output_signature=tf.TensorSpec([None, None], tf.float32))
        dataset = dataset.map(lambda x: time_warp(x, 4.0, [8, 8]))
        for got, spectrogram in zip(dataset, spectrograms):
            np.testing.assert_array_equal(got.numpy(), time_warp(spectrogram, 4.0, [8, 8]).numpy())

    def test_bad_input_names_the_argument(self):
        with self.assertRaisesRegex(ValueError, "`w`"):
            time_warp(np.zeros([10, 4], np.float32), -1.0, [1, 2])
        with self.assertRaisesRegex(ValueError, "spectrogram"):
            time_warp(np.zeros([10], np.float32), 1.0, [1, 2])


if __name__ == "__main__":
    tf.test.main()

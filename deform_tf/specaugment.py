"""SpecAugment's time warp (Park et al. 2019, arXiv 1904.08779) as a recipe on `sparse_image_warp`.

Convention: a spectrogram is an image whose first spatial axis (y) is time, in frames, and
whose second (x) is frequency, in bins: [time, freq], [time, freq, channels] or
[batch, time, freq, channels]. SpecAugment moves the frame at a random anchor time t0 in
[w, time - 1 - w] by a random distance s in [-w, w] frames (w is the paper's time-warp parameter
W); frames in between stretch or shrink smoothly.

Here each spectrogram goes to `sparse_image_warp` as a one-pixel-wide image of time, its
frequency bins (and channels) folded into the channel axis, so that every bin moves alike. Three
control points on that column: frame 0 and frame time - 1 stay, frame t0 moves to t0 + s; the
thin-plate spline through them is the flow along time (the points lie on one line; the spline's
slope across it is zero by `deform_tf.spline`'s convention, and the column has no width anyway).
Frames 0, t0 and time - 1 land where they should (to float rounding). Without the pinned end frames (the points at t0 alone,
as in the widely copied tfa recipe, which puts them at several frequencies of one frame) all
points move alike, and the spline's answer is the exact shift by s of the whole spectrogram, not
a warp.

(t0, s) come from `seed` alone (stateless, `deform_tf.stateless_random`): two uniform numbers
u, v in [0, 1) per spectrogram, t0 = w + u (time - 1 - 2 w) and s = w (2 v - 1). t0 and s are
not rounded to whole frames. A spectrogram of at most 2 w frames (SpecAugment assumes more) gets
its anchor range narrowed to the middle frame, (time - 1) / 2.
"""

import tensorflow as tf

from deform_tf import checks
from deform_tf import sparse_warp
from deform_tf import stateless_random


def time_warp_control_points(batch_size, num_frames, w, seed, dtype=tf.float32):
    """The control points of `time_warp`: (source, dest), each [batch, 3, 2] (time, 0).

    Args:
      batch_size, num_frames: int scalars (Python or tensors): the number of spectrograms and
        of frames in each.
      w: maximal shift in frames (>= 0), Python number or scalar tensor.
      seed: stateless seed, int [2] (one stream for the batch) or [batch, 2] (one per example).
      dtype: float dtype of the points.

    Returns:
      source, dest: the frames 0, t0 and num_frames - 1 at column 0; dest equals source except
      for t0 + s in the middle. See the module docstring for how t0 and s are drawn.
    """
    seed = checks.check_stateless_seed(seed, batch_size)
    w = tf.cast(w, dtype)
    last_frame = tf.cast(num_frames, dtype) - 1.0
    middle = 0.5 * last_frame
    low, high = tf.minimum(w, middle), tf.maximum(last_frame - w, middle)
    draws = stateless_random.uniform([batch_size, 2], seed, dtype)
    anchor = low + draws[:, 0] * (high - low)  # [batch]
    shift = w * (2.0 * draws[:, 1] - 1.0)
    zeros = tf.zeros_like(anchor)

    def column(times):
        return tf.stack([tf.stack(times, axis=1), tf.zeros([batch_size, 3], dtype)], axis=-1)

    return (column([zeros, anchor, zeros + last_frame]),
            column([zeros, anchor + shift, zeros + last_frame]))


def time_warp(spectrogram, w, seed):
    """SpecAugment's time warp of spectrograms (see the module docstring for the convention).

    Args:
      spectrogram: [time, freq], [time, freq, channels] or [batch, time, freq, channels], float
        or integer (integer ones come back as float32); sizes may be unknown when traced.
      w: SpecAugment's time-warp parameter W: the maximal shift in frames, >= 0 (Python number
        or scalar tensor). w = 0 returns the spectrogram unchanged (bit for bit).
      seed: stateless seed, int tensor [2] (one stream for the batch: each spectrogram of the
        batch still gets its own anchor and shift) or [batch, 2] (one per spectrogram).

    Returns:
      The warped spectrogram, of the input's shape: the frame at a random anchor time t0 lands
      on t0 + s, the first and last frames stay (to float rounding), every frequency bin moves
      alike.
    """
    spectrogram = tf.convert_to_tensor(spectrogram, name="spectrogram")
    checks.check_image_dtype(spectrogram, "spectrogram")
    w = checks.check_strength(w, "w", "the maximal time shift in frames")
    images, restore_rank = sparse_warp.as_image_batch(spectrogram, "spectrogram")
    shape = tf.shape(images)
    batch, frames = shape[0], shape[1]
    columns = tf.reshape(images, [batch, frames, 1, -1])  # bins and channels as channels
    dtype = tf.float64 if images.dtype == tf.float64 else tf.float32
    source, dest = time_warp_control_points(batch, frames, w, seed, dtype)
    warped, _ = sparse_warp.sparse_image_warp(columns, source, dest)
    return restore_rank(tf.reshape(warped, shape))

"""One description of a random deformation, and the seeds it is drawn with, for every caller.

`Deformation` names a random deformation: the paper's thin-plate spline ("tps": a grid_size x
grid_size control grid, strength C in pixels) or Petrini et al.'s maximum-entropy diffeomorphism
("diffeo": temperature T, cutoff). Sizes left None follow the image (`default_tps`). The same
spec deforms training images in the `tf.data` pipelines (`apply`, one seed per example), the
measured images of a training run (`measure`, the run's seed) and those of `launch.profile`
(likewise), so one seed gives one deformation everywhere.

Seeds (stateless pairs): a measurement with seed s deforms its images with `measurement_seed(s)`
= [s, 1000003] (one draw for the batch; image k of N gets the k-th deformation of that draw)
and adds the noise of the relative stability with `noise_seed(s)` = (s, 7). A training pipeline
deforms example k of its stream (global position) with (s, k); the measurement's second value
is far above any stream position a measurement set is drawn from, so measured deformations are
not those trained on.
"""

import dataclasses
import math
from typing import Optional

import tensorflow as tf

from deform_tf import checks
from deform_tf import diffeo
from deform_tf import tps

KINDS = ("tps", "diffeo")
MEASUREMENT_STREAM = 1_000_003  # second value of a measurement's deformation seed
NOISE_STREAM = 7  # second value of a measurement's noise seed

# The paper's TPS settings: (image size in pixels, control grid n x n, strength C in pixels), for
# CIFAR-10 (32 px) and ImageNet (224 px).
PAPER_TPS = ((32, 3, 2.0), (224, 5, 10.0))


def measurement_seed(seed):
    """The stateless seed [2] (int64 tensor) of the deformations measured with seed `seed`."""
    return tf.constant([int(seed), MEASUREMENT_STREAM], tf.int64)


def noise_seed(seed):
    """The stateless seed (a pair of ints) of the noise measured with seed `seed`."""
    return (int(seed), NOISE_STREAM)


def default_tps(height, width):
    """(grid_size, strength in pixels) of the TPS deformation for [height, width] images.

    The paper's settings at its two sizes, for the shorter side s: s <= 32: a 3 x 3 grid and
    C = 2 s / 32 px (the CIFAR-10 setting, scaled with the image: 1.75 px at 28 px); 32 <= s <=
    224: grid and C linear in s between the two settings, the grid rounded (4 x 4 from 80 to
    175 px); s >= 224: a 5 x 5 grid and C = 10 s / 224 px (the ImageNet setting, scaled). C is
    rounded to 3 decimals.
    """
    size = min(int(height), int(width))
    (small, small_grid, small_c), (large, large_grid, large_c) = PAPER_TPS
    if size <= small:
        return small_grid, round(small_c * size / small, 3)
    if size >= large:
        return large_grid, round(large_c * size / large, 3)
    t = (size - small) / (large - small)
    grid = small_grid + t * (large_grid - small_grid)
    return int(math.floor(grid + 0.5)), round(small_c + t * (large_c - small_c), 3)


@dataclasses.dataclass(frozen=True)
class Deformation:
    """A random deformation: "tps" or "diffeo" (Petrini et al.), sized per image size.

    Attributes:
      kind: "tps" or "diffeo".
      grid_size, strength: TPS control grid (n x n) and strength C in pixels; None = sized to
        the image (`default_tps`). For "diffeo" they define the TPS displacement its default
        temperature matches.
      temperature: diffeo temperature; None = the one whose RMS displacement matches the TPS
        deformation (`deform_tf.diffeo.temperature_matching_tps`, at this `cutoff`).
      cutoff: diffeo cutoff, the highest sine mode per axis.
      seed: the seed of a measurement (`measure`); `apply` takes its seeds as an argument.
    """

    kind: str = "tps"
    grid_size: Optional[int] = None
    strength: Optional[float] = None
    temperature: Optional[float] = None
    cutoff: int = 3
    seed: int = 0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Deformation kind must be 'tps' or 'diffeo', got {self.kind!r}.")
        if self.grid_size is not None:
            checks.check_grid_size(self.grid_size)
        if self.strength is not None:
            checks.check_strength(self.strength)

    def tps_for(self, height, width):
        """(grid_size, strength) at this image size: given, or `default_tps`."""
        grid, strength = default_tps(height, width)
        return (self.grid_size if self.grid_size is not None else grid,
                float(self.strength) if self.strength is not None else strength)

    def temperature_for(self, height, width):
        """The diffeo temperature: given, or the one whose RMS displacement matches the TPS
        deformation of `tps_for(height, width)` at this image size and cutoff."""
        if self.temperature is not None:
            return float(self.temperature)
        grid, strength = self.tps_for(height, width)
        return float(diffeo.temperature_matching_tps(height, width, grid, strength,
                                                     self.cutoff))

    def settings(self, height, width):
        """What is measured at this image size: a JSON-serializable dict with a "text"."""
        grid, strength = self.tps_for(height, width)
        sized = self.grid_size is None or self.strength is None
        if self.kind == "tps":
            text = f"TPS {grid}x{grid} grid, C = {strength:g} px"
            settings = {"kind": "tps", "grid_size": grid, "strength": strength}
        else:
            temperature = self.temperature_for(height, width)
            text = f"diffeo T = {temperature:.3g}, cutoff {self.cutoff}"
            settings = {"kind": "diffeo", "temperature": temperature, "cutoff": self.cutoff}
            if self.temperature is None:
                settings.update(matched_tps_grid_size=grid, matched_tps_strength=strength)
                text += f" (RMS displacement of TPS {grid}x{grid}, C = {strength:g} px)"
        if sized:
            text += f", sized to {height}x{width} images"
        settings.update(image_size=[int(height), int(width)], sized_to_image=sized,
                        seed=self.seed, text=text)
        return settings

    def apply(self, images, seed):
        """Deforms [N, H, W, C] images (static H, W) with stateless `seed` ([2] or [N, 2])."""
        height, width = images.shape[1], images.shape[2]
        if self.kind == "tps":
            grid, strength = self.tps_for(height, width)
            return tps.random_tps_deformation(images, grid, strength, seed)
        return diffeo.random_diffeo(images, self.temperature_for(height, width), self.cutoff,
                                    seed)

    def measure(self, height, width):
        """The measured deformation of [N, height, width, C] images: fn(images) -> deformed,
        drawn from `measurement_seed(self.seed)` (the same images, the same deformations)."""
        seed = measurement_seed(self.seed)
        del height, width  # sized from the images themselves
        return lambda x: self.apply(x, seed)

    function = measure  # the name `deform_tf.profile` callers know

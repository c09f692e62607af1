"""Keras layers applying random smooth deformations, with Keras 3's preprocessing-layer conventions.

`RandomTPSDeformation` (the paper's thin-plate-spline deformation) and `RandomDiffeo` (Petrini et
al.'s maximum-entropy diffeomorphisms) follow Keras' random image layers (`RandomFlip`,
`RandomElasticTransform`):
- The random transformation is drawn apart from its application
  (`get_random_transformation`, then `transform_images`, `transform_segmentation_masks`,
  `transform_keypoints`, `transform_bounding_boxes`), so one draw moves an image and its labels.
- Inputs are a batch [batch, height, width, channels] or a single image [height, width,
  channels], or a dict with "images" and any of "segmentation_masks" ([..., height, width, k],
  resampled by the nearest pixel so class ids stay class ids), "keypoints" ([..., n, 2] (x, y))
  and "bounding_boxes" ({"boxes": [..., n, 4], "labels": [..., n]}, in `bounding_box_format`,
  a format of `keras.utils.bounding_boxes`); other entries pass through unchanged.
- Inside a model the layers deform during `fit` and not in `predict`/`evaluate` or
  `model(x, training=False)` (unless `apply_in_inference=True`), where they return the input
  (images cast as below); called directly, e.g. in `tf.data.Dataset.map`, `training` defaults to
  True, as in Keras.
- Each call draws a fresh stateless seed from a Keras `SeedGenerator`; pass `seed=` to the call
  (int [2], or [batch, 2] for one draw per example) to control the deformation exactly.

Coordinates of keypoints and boxes are Keras': x right, y down, in pixels, with the pixel in row
i and column j covering [j, j + 1) x [i, i + 1) (its centre at (j + 0.5, i + 0.5)). The image
moves by a flow in `dense_image_warp`'s convention, out(q) = in(q - flow(q)), so the content at a
point p goes to the q that solves q - flow(q) = p: the layers solve it by fixed-point iteration
q <- p + flow(q), which converges while the deformation is a diffeomorphism (|grad flow| < 1; the
paper's strengths are far below). A box becomes the bounding box of its moved outline (each edge
sampled at `OUTLINE_POINTS` points), clipped to the image; keypoints are not clipped.
"""

import numbers

import keras
import tensorflow as tf

from deform_tf import checks
from deform_tf import dense_warp
from deform_tf import diffeo
from deform_tf import stateless_random
from deform_tf import tps

# Points per box edge (ends included) moved to find a box's deformed outline.
OUTLINE_POINTS = 17
# Fixed-point iterations of the inverse map q = p + flow(q); each divides the error by at least
# 1 / max |grad flow| (> 10 for the paper's deformations).
INVERSE_ITERATIONS = 20
# Streams of `stateless_random.uniform` for the per-example draws (the offsets use stream 0).
_STRENGTH_STREAM, _APPLY_STREAM = 11, 12


def check_amount_range(value, name, meaning):
    """A number v, or a pair (min, max), of finite amounts >= 0: returns (low, high) floats.

    A number gives (v, v), a fixed amount; a pair is drawn uniformly per example.
    """
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        low = high = checks.check_strength(float(value), name, meaning)
    else:
        try:
            low, high = (float(v) for v in value)
        except (TypeError, ValueError):
            raise ValueError(f"`{name}` ({meaning}) must be a number or a pair (min, max), got "
                             f"{value!r}.") from None
        checks.check_strength(low, name, meaning)
        checks.check_strength(high, name, meaning)
        if low > high:
            raise ValueError(f"`{name}` range (min, max) must have min <= max, got {value!r}.")
    return low, high


def check_probability(probability):
    """Returns `probability` as a float in [0, 1]; raises ValueError otherwise."""
    if (isinstance(probability, bool) or not isinstance(probability, numbers.Real)
            or not 0.0 <= probability <= 1.0):
        raise ValueError(f"`probability` (of deforming each example) must be a number in "
                         f"[0, 1], got {probability!r}.")
    return float(probability)


def draw_amounts(amount_range, batch_size, seed, dtype):
    """Per-example amounts [batch] uniform in (low, high), or the Python number if fixed."""
    low, high = amount_range
    if low == high:
        return low
    unit = stateless_random.uniform(tf.reshape(batch_size, [1]), seed, dtype, _STRENGTH_STREAM)
    return low + (high - low) * unit


def move_points(points_yx, flow):
    """Where the content at each (y, x) pixel-centre position lands under a flow.

    Args:
      points_yx: [batch, n, 2] float positions, (y, x) in pixels, pixel centres at integers.
      flow: [batch, height, width, 2] float flow (`dense_image_warp`'s convention), same dtype.

    Returns:
      [batch, n, 2] positions q with q - flow(q) = p (flow bilinear between pixels, the edge
      value outside), by `INVERSE_ITERATIONS` fixed-point steps from q = p + flow(p).
    """
    moved = points_yx
    for _ in range(INVERSE_ITERATIONS):
        moved = points_yx + dense_warp.resample_bilinear(flow, moved[..., 0], moved[..., 1])
    return moved


def box_outlines(boxes_xyxy):
    """[batch, n, 4] xyxy boxes -> [batch, n, 4 * OUTLINE_POINTS, 2] (x, y) points of their
    four edges."""
    t = tf.linspace(tf.zeros([], boxes_xyxy.dtype), 1.0, OUTLINE_POINTS)
    x1, y1, x2, y2 = (boxes_xyxy[..., i, None] for i in range(4))
    along_x, along_y = x1 + t * (x2 - x1), y1 + t * (y2 - y1)
    edges = [(along_x, y1 + 0 * t), (along_x, y2 + 0 * t), (x1 + 0 * t, along_y),
             (x2 + 0 * t, along_y)]
    return tf.concat([tf.stack(edge, axis=-1) for edge in edges], axis=-2)


class RandomDeformationBase(keras.layers.Layer):
    """Keras preprocessing-layer plumbing for a random flow; subclasses draw the flow.

    Subclasses implement `draw(batch_size, height, width, seed, dtype)`, returning a dict of
    per-example parameters, zero where the identity is wanted, and `flow(transformation)`. See
    the module docstring for inputs, coordinates and the training switch.

    Args:
      probability: the chance, per example, that it is deformed (else it is returned as is).
      fill_mode: the image beyond its border: "nearest" (the edge pixel, the default),
        "constant" (`fill_value`) or "reflect" (d c b a | a b c d | d c b a). Segmentation
        masks are filled the same way.
      fill_value: the value outside the image for "constant".
      bounding_box_format: the format of "bounding_boxes" inputs (e.g. "xyxy", "rel_yxyx",
        "center_xywh"; see `keras.utils.bounding_boxes.convert_format`); needed only for them.
      seed: int or None, seeds the layer's `SeedGenerator`.
      apply_in_inference: also deform when `training` is False.
    """

    def __init__(self, probability=1.0, fill_mode="nearest", fill_value=0.0,
                 bounding_box_format=None, seed=None, apply_in_inference=False, **kwargs):
        super().__init__(**kwargs)
        self.probability = check_probability(probability)
        self.fill_mode, self.fill_value = dense_warp.check_fill_mode(fill_mode, fill_value)
        self.bounding_box_format = bounding_box_format
        self.seed = seed
        self.apply_in_inference = bool(apply_in_inference)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def draw(self, batch_size, height, width, seed, dtype):
        raise NotImplementedError

    def flow(self, transformation):
        raise NotImplementedError

    def get_random_transformation(self, data, training=True, seed=None):
        """Draws one deformation per example, or returns None (no deformation).

        Args:
          data: the images (rank 3 or 4), or a dict with them under "images".
          training: deform only if True (or `apply_in_inference`).
          seed: stateless seed, int [2] or [batch, 2]; None draws one from the layer's generator.

        Returns:
          None, or a dict of the subclass's per-example parameters plus "height", "width"
          (Python ints) and "dtype" (the compute dtype).
        """
        if not (training or self.apply_in_inference):
            return None
        images = tf.convert_to_tensor(data["images"] if isinstance(data, dict) else data)
        images = self._as_batch(images, "images")
        height, width = images.shape[1], images.shape[2]
        if height is None or width is None:
            raise ValueError(
                f"{type(self).__name__} needs the image height and width when the graph is "
                f"built, got shape {images.shape.as_list()}. Resize or `ensure_shape` the images "
                "first.")
        batch_size = checks.batch_size_of(images)
        seed = checks.check_stateless_seed(
            self.seed_generator.next() if seed is None else seed, batch_size)
        _, dtype = dense_warp.to_compute_dtype(images)
        transformation = self.draw(batch_size, height, width, seed, dtype)
        if self.probability < 1.0:
            unit = stateless_random.uniform(tf.reshape(batch_size, [1]), seed, dtype,
                                            _APPLY_STREAM)
            keep = tf.cast(unit < self.probability, dtype)
            transformation = {key: value * tf.reshape(keep, [-1] + [1] * (value.shape.rank - 1))
                              for key, value in transformation.items()}
        transformation.update(height=height, width=width, dtype=dtype)
        return transformation

    def transform_images(self, images, transformation, training=True):
        """Warps [batch, height, width, channels] images (bilinear, `fill_mode`).

        Float images keep their dtype; integer images come back as float32 in their range.
        """
        images = tf.convert_to_tensor(images)
        out_dtype = dense_warp.output_dtype(images.dtype)
        if transformation is None or not training:
            return tf.cast(images, out_dtype)
        compute = tf.cast(images, transformation["dtype"])
        warped = dense_warp.warp_with_flow(compute, self._flow(transformation), self.fill_mode,
                                           self.fill_value)
        return tf.ensure_shape(tf.cast(warped, out_dtype), images.shape)

    def transform_segmentation_masks(self, segmentation_masks, transformation, training=True):
        """Moves [batch, height, width, k] label maps by the same flow, nearest pixel, any
        dtype (kept); `fill_mode` "constant" fills with `fill_value` cast to that dtype."""
        masks = tf.convert_to_tensor(segmentation_masks)
        if transformation is None or not training:
            return masks
        flow = self._flow(transformation)
        grid_y, grid_x = dense_warp.pixel_grid(transformation["height"],
                                               transformation["width"], flow.dtype)
        moved = dense_warp.resample_nearest(masks, grid_y - flow[..., 0], grid_x - flow[..., 1],
                                            self.fill_mode, self.fill_value)
        return tf.ensure_shape(moved, masks.shape)

    def transform_keypoints(self, keypoints, transformation, training=True):
        """Moves [batch, n, 2] (x, y) keypoints (Keras' pixel coordinates) with the content."""
        keypoints = tf.convert_to_tensor(keypoints)
        if transformation is None or not training:
            return keypoints
        flow = self._flow(transformation)
        centres_yx = tf.reverse(tf.cast(keypoints, flow.dtype), axis=[-1]) - 0.5
        moved = tf.reverse(move_points(centres_yx, flow), axis=[-1]) + 0.5
        return tf.ensure_shape(tf.cast(moved, keypoints.dtype), keypoints.shape)

    def transform_bounding_boxes(self, bounding_boxes, transformation, training=True):
        """Moves {"boxes": [batch, n, 4], ...} (a dense tensor; pad with boxes whose label is
        -1, as Keras) to the boxes of their moved outlines (clipped to the image), in
        `bounding_box_format`; other entries (labels) are kept."""
        self._check_box_format()
        if transformation is None or not training:
            return bounding_boxes
        height, width = transformation["height"], transformation["width"]
        boxes = tf.convert_to_tensor(bounding_boxes["boxes"])
        xyxy = keras.utils.bounding_boxes.convert_format(
            boxes, source=self.bounding_box_format, target="xyxy", height=height, width=width,
            dtype=transformation["dtype"])
        outline = box_outlines(xyxy)  # [batch, n, m, 2] (x, y)
        count = tf.shape(outline)[1] * tf.shape(outline)[2]
        points = tf.reshape(outline, tf.stack([tf.shape(outline)[0], count, 2]))
        moved = tf.reshape(self.transform_keypoints(points, transformation), tf.shape(outline))
        low = tf.reduce_min(moved, axis=-2)
        high = tf.reduce_max(moved, axis=-2)
        limit = tf.constant([width, height], low.dtype)
        moved_xyxy = tf.concat([tf.clip_by_value(low, 0.0, limit),
                                tf.clip_by_value(high, 0.0, limit)], axis=-1)
        result = dict(bounding_boxes)
        result["boxes"] = tf.cast(keras.utils.bounding_boxes.convert_format(
            moved_xyxy, source="xyxy", target=self.bounding_box_format, height=height,
            width=width, dtype=transformation["dtype"]), boxes.dtype)
        return result

    def transform_labels(self, labels, transformation, training=True):
        """Class labels do not change under a deformation."""
        return labels

    def call(self, inputs, training=True, seed=None):
        data = dict(inputs) if isinstance(inputs, dict) else {"images": inputs}
        if "images" not in data:
            raise ValueError(f"A dict input to {type(self).__name__} needs an 'images' entry, "
                             f"got keys {sorted(data)}.")
        images = tf.convert_to_tensor(data["images"])
        single = self._as_batch(images, "images").shape.rank != images.shape.rank
        batched = {key: self._batch(key, value) if single else value
                   for key, value in data.items()}
        transformation = self.get_random_transformation(batched, training=training, seed=seed)
        training = transformation is not None  # True also with `apply_in_inference`
        methods = {"images": self.transform_images,
                   "segmentation_masks": self.transform_segmentation_masks,
                   "keypoints": self.transform_keypoints,
                   "bounding_boxes": self.transform_bounding_boxes,
                   "labels": self.transform_labels}
        for key, method in methods.items():
            if key in batched:
                batched[key] = method(batched[key], transformation, training=training)
        if single:
            batched = {key: tf.nest.map_structure(lambda x: x[0], value)
                       if key in methods and key != "labels" else value
                       for key, value in batched.items()}
        return batched if isinstance(inputs, dict) else batched["images"]

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            probability=self.probability,
            fill_mode=self.fill_mode,
            fill_value=self.fill_value,
            bounding_box_format=self.bounding_box_format,
            seed=self.seed,
            apply_in_inference=self.apply_in_inference,
        )
        return config

    def _check_box_format(self):
        if not self.bounding_box_format:
            raise ValueError(
                f"The input has 'bounding_boxes' but {type(self).__name__} has no "
                "`bounding_box_format`: pass e.g. `bounding_box_format='xyxy'` to the layer.")

    def _flow(self, transformation):
        """The transformation's flow, computed once per call."""
        if "flow" not in transformation:
            transformation["flow"] = self.flow(transformation)
        return transformation["flow"]

    @staticmethod
    def _as_batch(images, name):
        """Rank-4 images as they are, a rank-3 image as a batch of one."""
        if images.shape.rank == 3:
            return images[None]
        checks.check_rank(images, 4, name, "[batch, height, width, channels] (or one image "
                          "[height, width, channels])")
        return images

    @staticmethod
    def _batch(key, value):
        """An entry of a single example's dict with a batch axis of one added."""
        if key == "labels" or key not in ("images", "segmentation_masks", "keypoints",
                                          "bounding_boxes"):
            return value
        return tf.nest.map_structure(lambda x: tf.convert_to_tensor(x)[None], value)


@keras.saving.register_keras_serializable(package="deform_tf")
class RandomTPSDeformation(RandomDeformationBase):
    """Random TPS deformation of images (the paper's, `tps.random_tps_deformation`).

    Args:
      grid_size: int n (n x n control grid, border included) or (rows, cols), each >= 2.
      strength: C >= 0, the maximal source offset per axis in pixels; a number (fixed, the
        paper's) or a pair (min, max) from which C is drawn uniformly per example.
      probability, fill_mode, fill_value, bounding_box_format, seed, apply_in_inference: as
        `RandomDeformationBase` (defaults: always, edge clamping, no boxes).

    Call args:
      inputs: images [batch, height, width, channels] or [height, width, channels] with static
        height and width (>= 2), or a dict (module docstring). Float images keep their dtype;
        integer images come back as float32.
      training: deform only if True (or `apply_in_inference`); defaults to True.
      seed: optional stateless seed, int [2] or [batch, 2], instead of the layer's generator.
        With a fixed strength, probability 1 and edge clamping, the images equal
        `random_tps_deformation(images, grid_size, strength, seed)` bit for bit.

    The transformation is {"source_offsets": [batch, rows * cols, 2]} (`tps.tps_grid_warp`).
    """

    def __init__(self, grid_size, strength, seed=None, apply_in_inference=False, probability=1.0,
                 fill_mode="nearest", fill_value=0.0, bounding_box_format=None, **kwargs):
        super().__init__(probability=probability, fill_mode=fill_mode, fill_value=fill_value,
                         bounding_box_format=bounding_box_format, seed=seed,
                         apply_in_inference=apply_in_inference, **kwargs)
        self.grid_size = checks.check_grid_size(grid_size)
        self.strength_range = check_amount_range(strength, "strength",
                                                 "the maximal source offset in pixels")
        low, high = self.strength_range
        self.strength = low if low == high else (low, high)

    def draw(self, batch_size, height, width, seed, dtype):
        strength = draw_amounts(self.strength_range, batch_size, seed, dtype)
        if not isinstance(strength, float):
            strength = strength[:, None, None]
        rows, cols = self.grid_size
        return {"source_offsets": tps.random_source_offsets(batch_size, rows * cols, strength,
                                                            seed, dtype)}

    def flow(self, transformation):
        return tps.tps_grid_flow(transformation["height"], transformation["width"],
                                 self.grid_size, transformation["source_offsets"])

    def transform_images(self, images, transformation, training=True):
        if transformation is None or not training or "flow" in transformation:
            return super().transform_images(images, transformation, training)
        return tps.tps_grid_warp(images, transformation["source_offsets"], self.grid_size,
                                 return_flow=False, fill_mode=self.fill_mode,
                                 fill_value=self.fill_value)

    def get_config(self):
        config = super().get_config()
        config.update(grid_size=list(self.grid_size),
                      strength=(self.strength if isinstance(self.strength, float)
                                else list(self.strength)))
        return config


@keras.saving.register_keras_serializable(package="deform_tf")
class RandomDiffeo(RandomDeformationBase):
    """Random maximum-entropy diffeomorphisms (Petrini et al. 2021; `diffeo.random_diffeo`).

    Args:
      cutoff: Python int >= 1, the highest sine mode per axis (Petrini use 3 to 15).
      temperature: T >= 0, a number or a pair (min, max) drawn uniformly per example; see
        `diffeo.temperature_range`.
      displacement: instead of `temperature`, the RMS displacement in pixels (a number or a
        (min, max) pair drawn uniformly per example), converted to T exactly for the image size
        (`diffeo.exact_rms_displacement`, which scales as sqrt(T); Petrini's large-cutoff
        estimate is `diffeo.typical_displacement`). Give exactly one of the two.
      probability, fill_mode, fill_value, bounding_box_format, seed, apply_in_inference: as
        `RandomDeformationBase`.

    Call args: as `RandomTPSDeformation`. With a fixed temperature, probability 1 and edge
    clamping, the images equal `random_diffeo(images, temperature, cutoff, seed)`.

    The transformation is {"coefficients": [batch, 2, cutoff, cutoff]}
    (`diffeo.coefficients_to_flow`).
    """

    def __init__(self, cutoff, temperature=None, displacement=None, probability=1.0,
                 fill_mode="nearest", fill_value=0.0, bounding_box_format=None, seed=None,
                 apply_in_inference=False, **kwargs):
        super().__init__(probability=probability, fill_mode=fill_mode, fill_value=fill_value,
                         bounding_box_format=bounding_box_format, seed=seed,
                         apply_in_inference=apply_in_inference, **kwargs)
        if (temperature is None) == (displacement is None):
            raise ValueError("Give `RandomDiffeo` exactly one of `temperature` (T) and "
                             f"`displacement` (pixels), got temperature={temperature!r}, "
                             f"displacement={displacement!r}.")
        self.cutoff = diffeo.check_cutoff(cutoff)
        self.temperature = temperature
        self.displacement = displacement
        if temperature is not None:
            self.amount_range = check_amount_range(temperature, "temperature", "T")
        else:
            self.amount_range = check_amount_range(displacement, "displacement",
                                                   "the RMS displacement in pixels")

    def draw(self, batch_size, height, width, seed, dtype):
        amount = draw_amounts(self.amount_range, batch_size, seed, dtype)
        if self.displacement is not None:
            unit = float(diffeo.exact_rms_displacement(height, width, 1.0, self.cutoff))
            amount = (amount / unit) ** 2
        if isinstance(amount, float):
            return {"coefficients": diffeo.max_entropy_coefficients(
                batch_size, self.cutoff, amount, seed, dtype)}
        unit_coefficients = diffeo.max_entropy_coefficients(batch_size, self.cutoff, 1.0, seed,
                                                            dtype)
        return {"coefficients": unit_coefficients * tf.sqrt(amount)[:, None, None, None]}

    def flow(self, transformation):
        return diffeo.coefficients_to_flow(transformation["coefficients"],
                                           transformation["height"], transformation["width"])

    def get_config(self):
        config = super().get_config()
        as_config = lambda v: list(v) if isinstance(v, (tuple, list)) else v  # noqa: E731
        config.update(cutoff=self.cutoff, temperature=as_config(self.temperature),
                      displacement=as_config(self.displacement))
        return config


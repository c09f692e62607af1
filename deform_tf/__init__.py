"""deform-tf: deformation stability of CNNs in TensorFlow 2 / Keras 3.

Ops with tensorflow-addons' conventions (points and flows in pixels, (y, x) order), drop-in
replacements for tfa's: `dense_image_warp`, `sparse_image_warp`, `interpolate_spline`,
`interpolate_bilinear`, also under tfa's names in `deform_tf.image` (so `import deform_tf as
tfa` leaves `tfa.image.X(...)` calls unchanged); SpecAugment's `time_warp` on them; the paper's
random thin-plate-spline deformation on a fast path: `random_tps_deformation`, `tps_grid_warp`,
`tps_grid_operator`; Petrini et al.'s max-entropy diffeomorphisms (`random_diffeo`, ...); and
Keras preprocessing layers for both, `RandomTPSDeformation` and `RandomDiffeo` (single images
or batches; dicts whose segmentation masks, keypoints and bounding boxes move with the images;
fill modes; strength ranges; an application probability).

The measurement stack lives in submodules: `deform_tf.models` (the VGG family and
`representation_model`), `deform_tf.representations` (the measured points of any Keras model),
`deform_tf.sensitivity` (deformation sensitivity, relative stability), `deform_tf.profile` (all
of them at every point of a model, in one call),
`deform_tf.smoothness` (filter smoothness), `deform_tf.initializers` (fan-in and smooth init),
`deform_tf.model_io` (loading models, files and checkpoints) and `deform_tf.figures`.
"""

from deform_tf import image
from deform_tf.dense_warp import dense_image_warp
from deform_tf.diffeo import exact_rms_displacement
from deform_tf.diffeo import max_entropy_coefficients
from deform_tf.diffeo import max_entropy_flow
from deform_tf.diffeo import random_diffeo
from deform_tf.diffeo import temperature_for_displacement
from deform_tf.diffeo import temperature_matching_tps
from deform_tf.diffeo import temperature_range
from deform_tf.diffeo import tps_rms_displacement
from deform_tf.diffeo import typical_displacement
from deform_tf.interpolate import interpolate_bilinear
from deform_tf.layers import RandomDiffeo
from deform_tf.layers import RandomTPSDeformation
from deform_tf.sparse_warp import sparse_image_warp
from deform_tf.specaugment import time_warp
from deform_tf.spline import interpolate_spline
from deform_tf.tps import grid_points
from deform_tf.tps import random_source_offsets
from deform_tf.tps import random_tps_deformation
from deform_tf.tps import tps_grid_flow
from deform_tf.tps import tps_grid_operator
from deform_tf.tps import tps_grid_warp

__version__ = "0.1.0"

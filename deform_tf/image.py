"""tensorflow-addons' warp ops under tfa's names, for a one-line migration.

`tfa.image` held `dense_image_warp`, `sparse_image_warp`, `interpolate_spline` and
`interpolate_bilinear`; this module holds ours (the same objects as `deform_tf.X`), so code that
calls `tfa.image.X(...)` runs unchanged after `import deform_tf as tfa`. Only these four of tfa's
image ops exist here.
"""

from deform_tf.dense_warp import dense_image_warp
from deform_tf.interpolate import interpolate_bilinear
from deform_tf.sparse_warp import sparse_image_warp
from deform_tf.spline import interpolate_spline

__all__ = ["dense_image_warp", "interpolate_bilinear", "interpolate_spline", "sparse_image_warp"]

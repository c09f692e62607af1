"""Speed and exactness of deform-tf's deformations against albumentations', one thread each.

Run as `python -m bench.vs_albumentations` (`--quick` for a smoke run of a few seconds). It needs
albumentations (an optional dependency of the benchmarks only: `pip install -e ".[bench]"`) and
refuses with that message without it. On uint8 RGB images of 32x32, 224x224 and 375x500, with
TensorFlow, OpenCV and the BLAS libraries held to one thread, it times images per second of:

  tps          `random_tps_deformation` (a random 5x5 grid, and 3x3 at 32 px as the paper; source
               offsets uniform in [-C, C] px) for one image per call and for batches of 32,
               against albumentations' `ThinPlateSpline` on one image (its offsets are normal
               with std scale / 10 of the image side; `scale` is set so that the std equals ours,
               C / sqrt(3) px at the geometric-mean side).
  diffeo       `random_diffeo` (cutoff 3, the temperature whose RMS displacement equals the TPS
               deformation's, `temperature_matching_tps`) against albumentations'
               `ElasticTransform` (sigma = 50 px at 224 px, scaled with the image side; `alpha`
               calibrated on one draw to the same RMS displacement).

Ours return float32 images (not rounded), albumentations uint8. Entries are timed round-robin
(samples of back-to-back calls, a fresh seed per call), medians reported.

Exactness, in pixels, from a few draws per workload. Each method is a sampling map: output pixel
p takes the input at map(p). The map is compared with its nominal definition, evaluated in
float64 by independent code (scipy, numpy):
  tps          the thin-plate spline through the control points and the source positions asked
               for (grid point + offset), fitted in the method's own coordinates (pixels for
               ours; the unit square, x / width and y / height, for albumentations). The
               "control points" column is the map error at the control points inside the image,
               interpolated bilinearly from the four surrounding pixels (albumentations' grid
               ends at x = width, y = height, outside the image); "field" is its maximum over
               all pixels.
  elastic      albumentations' definition: alpha times its normal noise (normalized by the
               largest absolute value) smoothed by an exact Gaussian of std sigma per component
               (edges replicated). Every pixel carries its own noise value, so every pixel is a
               control point: the error is over all pixels.
  diffeo       the sine series of the drawn coefficients in float64 (no control points: the
               error is over all pixels).
The "resampling" column compares the map with where the uint8 image is actually read: an image of
alternating 0 and 255 rows (and columns) is warped by the same draw, and the fraction of the read
between two rows is recovered from the output value (to 1/510 px after albumentations' rounding
to uint8; ours are not rounded), wherever the map is inside the image.
"""

import copy
import dataclasses
import math
import os
from unittest import mock

# One thread for the numerical libraries, before numpy, OpenCV and TensorFlow load them.
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

# pylint: disable=wrong-import-position
from bench import common  # sets the environment before TensorFlow is imported
import numpy as np  # pylint: disable=wrong-import-order
import tensorflow as tf  # pylint: disable=wrong-import-order

import deform_tf
# pylint: enable=wrong-import-position

MISSING = ("bench.vs_albumentations needs albumentations, an optional dependency of the "
           "benchmarks only: install it with `pip install -e \".[bench]\"` (or `pip install "
           "albumentations`) and run again.")
CUTOFF = 3  # the diffeo's highest sine mode
BATCH = 32


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    height: int
    width: int
    grid_size: int
    strength: float  # C, pixels
    diffeo: bool = True  # also time the diffeo and ElasticTransform

    def describe(self):
        return f"{self.height}x{self.width}x3 uint8, {self.grid_size}x{self.grid_size} grid, " \
               f"C={self.strength:g}"

    @property
    def side(self):
        return math.sqrt(self.height * self.width)

    @property
    def elastic_sigma(self):
        return 50.0 * self.side / 224.0


WORKLOADS = (
    Workload("32x32/3x3", 32, 32, 3, 2.0, diffeo=False),
    Workload("32x32", 32, 32, 5, 2.0),
    Workload("224x224", 224, 224, 5, 10.0),
    Workload("375x500", 375, 500, 5, 20.0),
)
QUICK_WORKLOADS = (Workload("32x32", 32, 32, 5, 2.0), Workload("64x48", 64, 48, 3, 4.0))

ALB_TPS = "albumentations ThinPlateSpline"
ALB_ELASTIC = "albumentations ElasticTransform"
OUR_TPS = "random_tps_deformation"
OUR_DIFFEO = "random_diffeo"


@dataclasses.dataclass(frozen=True)
class Row:
    workload: str
    method: str
    batch: int
    img_per_s: float
    spread: float  # interquartile range / median
    vs_albumentations: float  # img/s relative to albumentations' transform of the same family
    control_error: float  # max px at the control points (nan where not applicable)
    field_error: float  # max px over pixels
    resampling_error: float  # max px, map vs where the image is read


def load_albumentations():
    """(albumentations, its geometric functional module, cv2); SystemExit(MISSING) if absent."""
    # pylint: disable=import-outside-toplevel
    try:
        import albumentations
        import cv2
        from albumentations.augmentations.geometric import functional
    except ImportError as error:
        raise SystemExit(f"{MISSING} ({error})") from None
    return albumentations, functional, cv2


# ---------------------------------------------------------------------------------------------
# Nominal maps (float64, scipy) and the error measures.


def pixel_positions(height, width):
    """[height, width, 2] float64 (y, x) of every pixel."""
    ys, xs = np.meshgrid(np.arange(height, dtype=np.float64),
                         np.arange(width, dtype=np.float64), indexing="ij")
    return np.stack([ys, xs], axis=-1)


def nominal_tps(controls, sources, height, width, frame=(1.0, 1.0)):
    """The thin-plate spline through controls -> sources ([K, 2] (y, x) px) at every pixel.

    Fitted and evaluated with coordinates multiplied by `frame` (per axis), then returned in
    pixels: [height, width, 2] float64. scipy's `RBFInterpolator` (r^2 log r, affine part).
    """
    from scipy import interpolate  # pylint: disable=import-outside-toplevel
    frame = np.asarray(frame, np.float64)
    spline = interpolate.RBFInterpolator(np.asarray(controls, np.float64) * frame,
                                         np.asarray(sources, np.float64) * frame,
                                         kernel="thin_plate_spline", degree=1)
    pixels = pixel_positions(height, width).reshape(-1, 2)
    return (spline(pixels * frame) / frame).reshape(height, width, 2)


def nominal_elastic(noise, alpha, sigma):
    """albumentations' elastic map by its definition: [2, H, W] (dx, dy) noise -> (y, x) map."""
    from scipy import ndimage  # pylint: disable=import-outside-toplevel
    dx, dy = (alpha * ndimage.gaussian_filter(np.asarray(n, np.float64), sigma, mode="nearest",
                                              truncate=12.0) for n in noise)
    return pixel_positions(*dx.shape) + np.stack([dy, dx], axis=-1)


def nominal_diffeo(coefficients, height, width):
    """The source map p - flow(p) of Petrini's sine series, [height, width, 2] float64.

    coefficients: [2, c, c] (dy field, dx field), C[k, i - 1, j - 1] multiplies
    sin(i pi y / (height - 1)) sin(j pi x / (width - 1)); flow = (height field_y, width field_x).
    """
    coefficients = np.asarray(coefficients, np.float64)
    modes = np.arange(1, coefficients.shape[-1] + 1)
    sin_y = np.sin(np.pi * np.outer(np.arange(height) / (height - 1), modes))
    sin_x = np.sin(np.pi * np.outer(np.arange(width) / (width - 1), modes))
    fields = [sin_y @ c @ sin_x.T for c in coefficients]
    flow = np.stack([height * fields[0], width * fields[1]], axis=-1)
    return pixel_positions(height, width) - flow


def bilinear(values, point):
    """`values` [H, W, ...] interpolated bilinearly at the (y, x) point inside the image."""
    height, width = values.shape[:2]
    y0 = min(int(math.floor(point[0])), height - 2)
    x0 = min(int(math.floor(point[1])), width - 2)
    ty, tx = point[0] - y0, point[1] - x0
    top = (1 - tx) * values[y0, x0] + tx * values[y0, x0 + 1]
    bottom = (1 - tx) * values[y0 + 1, x0] + tx * values[y0 + 1, x0 + 1]
    return (1 - ty) * top + ty * bottom


def map_errors(realized_map, nominal, controls=None):
    """(max error at the controls inside the image or nan, max error over pixels), px.

    realized_map, nominal: [H, W, 2] (y, x) source positions; controls: [K, 2] (y, x) or None.
    """
    error = np.asarray(realized_map, np.float64) - nominal
    height, width = error.shape[:2]
    field = float(np.max(np.linalg.norm(error, axis=-1)))
    if controls is None:
        return float("nan"), field
    inside = [c for c in np.asarray(controls) if 0 <= c[0] <= height - 1 and 0 <= c[1] <= width - 1]
    control = max(float(np.linalg.norm(bilinear(error, c))) for c in inside)
    return control, field


def parity_image(height, width):
    """[height, width, 3] uint8: 255 on odd rows (channel 0), on odd columns (channel 1), 0."""
    ys, xs = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return np.stack([255 * (ys % 2), 255 * (xs % 2), np.zeros_like(ys)], -1).astype(np.uint8)


def resampling_error(warped, realized_map):
    """Max px distance between the map and where the uint8 image was actually read.

    warped: [H, W, >= 2] `parity_image` warped by the map. Along y, rows alternate 0 and 255,
    so a bilinear read at fraction t past an even row gives 255 t (255 (1 - t) past an odd one),
    whatever the x interpolation; likewise along x. Pixels whose map is inside the image and at
    least 0.05 px from a whole pixel on both axes count (the row of the read is then known).
    """
    realized_map = np.asarray(realized_map, np.float64)
    height, width = realized_map.shape[:2]
    lower = np.floor(realized_map)
    fraction = realized_map - lower
    usable = np.all((fraction > 0.05) & (fraction < 0.95), axis=-1)
    usable &= (lower[..., 0] >= 0) & (lower[..., 0] < height - 1)
    usable &= (lower[..., 1] >= 0) & (lower[..., 1] < width - 1)
    value = np.asarray(warped[..., :2], np.float64) / 255.0
    read = np.where(lower % 2 == 1, 1.0 - value, value)
    difference = np.linalg.norm(read - fraction, axis=-1)[usable]
    return float(np.max(difference)) if difference.size else float("nan")


def _combine(results):
    """Elementwise max of (control, field, resampling) tuples over draws (nan-aware)."""
    return tuple(float(np.nanmax(column)) if np.any(np.isfinite(column)) else float("nan")
                 for column in np.asarray(results, np.float64).T)


# ---------------------------------------------------------------------------------------------
# Our deformations.


def _seed(i):
    return tf.constant([i, 2026], tf.int32)


def diffeo_temperature(w):
    return float(deform_tf.temperature_matching_tps(w.height, w.width, w.grid_size, w.strength,
                                                     CUTOFF))


def our_tps_exactness(w, draws):
    """(control, field, resampling) max errors in px of `random_tps_deformation` over draws."""
    controls = deform_tf.grid_points(w.height, w.width, w.grid_size)
    parity = parity_image(w.height, w.width)[None]
    pixels = pixel_positions(w.height, w.width)
    results = []
    for i in range(draws):
        warped, flow = deform_tf.random_tps_deformation(parity, w.grid_size, w.strength,
                                                        _seed(i), return_flow=True)
        offsets = deform_tf.random_source_offsets(1, len(controls), w.strength, _seed(i))
        sources = controls + offsets.numpy()[0].astype(np.float64)
        realized_map = pixels - flow.numpy()[0]
        nominal = nominal_tps(controls, sources, w.height, w.width)
        results.append(map_errors(realized_map, nominal, controls)
                       + (resampling_error(warped.numpy()[0], realized_map),))
    return _combine(results)


def our_diffeo_exactness(w, draws):
    """(nan, field, resampling) max errors in px of `random_diffeo` over draws."""
    temperature = diffeo_temperature(w)
    parity = parity_image(w.height, w.width)[None]
    pixels = pixel_positions(w.height, w.width)
    results = []
    for i in range(draws):
        warped, flow = deform_tf.random_diffeo(parity, temperature, CUTOFF, _seed(i),
                                               return_flow=True)
        coefficients = deform_tf.max_entropy_coefficients(1, CUTOFF, temperature, _seed(i))
        realized_map = pixels - flow.numpy()[0]
        nominal = nominal_diffeo(coefficients.numpy()[0], w.height, w.width)
        results.append(map_errors(realized_map, nominal)
                       + (resampling_error(warped.numpy()[0], realized_map),))
    return _combine(results)


def our_callables(w, images):
    """{method: (call(seed) -> images)} of our two deformations, compiled for `images`."""
    temperature = diffeo_temperature(w)
    tps_fn = tf.function(lambda x, s: deform_tf.random_tps_deformation(
        x, w.grid_size, w.strength, s), autograph=False)
    diffeo_fn = tf.function(lambda x, s: deform_tf.random_diffeo(
        x, temperature, CUTOFF, s), autograph=False)
    calls = {OUR_TPS: lambda seed: tps_fn(images, seed)}
    if w.diffeo:
        calls[OUR_DIFFEO] = lambda seed: diffeo_fn(images, seed)
    return calls


# ---------------------------------------------------------------------------------------------
# albumentations.


def albumentations_tps(albumentations, w):
    # std of N(0, scale / 10) of the side = C / sqrt(3) px at the geometric-mean side.
    scale = 10.0 * w.strength / (math.sqrt(3.0) * w.side)
    return albumentations.ThinPlateSpline(scale_range=(scale, scale),
                                          num_control_points=w.grid_size, p=1.0)


def elastic_alpha(functional, w):
    """alpha giving albumentations' elastic field the TPS deformation's RMS displacement (one
    calibration draw; the field is linear in alpha)."""
    dx, dy = functional.generate_displacement_fields(
        (w.height, w.width), 1.0, w.elastic_sigma, False, (0, 0), np.random.default_rng(0),
        "gaussian")
    rms = math.sqrt(float(np.mean(np.square(dx) + np.square(dy))))
    return deform_tf.tps_rms_displacement(w.height, w.width, w.grid_size, w.strength) / rms


def albumentations_elastic(albumentations, functional, w):
    return albumentations.ElasticTransform(alpha=elastic_alpha(functional, w),
                                           sigma=w.elastic_sigma, p=1.0)


def _map_of(params):
    return np.stack([params["map_y"], params["map_x"]], axis=-1)


def albumentations_tps_exactness(albumentations, functional, w, draws):
    """(control, field, resampling) max errors in px of `ThinPlateSpline` over draws.

    The control points and the positions asked for are recorded from its call of
    `compute_tps_weights` (unit-square (x, y) coordinates).
    """
    transform = albumentations_tps(albumentations, w)
    parity = parity_image(w.height, w.width)
    frame = (1.0 / w.height, 1.0 / w.width)
    results = []
    for i in range(draws):
        transform.set_random_seed(i)
        with mock.patch.object(functional, "compute_tps_weights",
                               wraps=functional.compute_tps_weights) as spy:
            params = transform.get_params_dependent_on_data(
                {"shape": (w.height, w.width, 3)}, {})
        if spy.call_count != 1:
            raise RuntimeError("albumentations' ThinPlateSpline no longer calls "
                               "compute_tps_weights once per draw; update this benchmark.")
        src, dst = (np.asarray(a, np.float64)[:, ::-1] * [w.height, w.width]
                    for a in spy.call_args.args[:2])
        realized_map = _map_of(params)
        nominal = nominal_tps(src, dst, w.height, w.width, frame)
        warped = transform.apply(parity, **params)
        results.append(map_errors(realized_map, nominal, src)
                       + (resampling_error(warped, realized_map),))
    return _combine(results)


def albumentations_elastic_exactness(albumentations, functional, w, draws):
    """(nan, field, resampling) max errors in px of `ElasticTransform` over draws.

    Its noise is replayed from the state of its random generator, recorded at its call of
    `generate_displacement_fields`; the replay is checked to give its field bit for bit.
    """
    transform = albumentations_elastic(albumentations, functional, w)
    parity = parity_image(w.height, w.width)
    generate = functional.generate_displacement_fields
    results = []
    for i in range(draws):
        recorded = {}

        def spy(*args, **kwargs):
            generator = kwargs["random_generator"]
            recorded["state"] = copy.deepcopy(generator.bit_generator.state)
            recorded["kind"] = type(generator.bit_generator)
            recorded["kwargs"] = kwargs
            recorded["args"] = args
            recorded["result"] = generate(*args, **kwargs)
            return recorded["result"]

        transform.set_random_seed(i)
        with mock.patch.object(functional, "generate_displacement_fields", side_effect=spy):
            params = transform.get_params_dependent_on_data({"shape": (w.height, w.width, 3)},
                                                            {})
        if "state" not in recorded or recorded["kwargs"].get("noise_distribution") != "gaussian":
            raise RuntimeError("albumentations' ElasticTransform no longer draws through "
                               "generate_displacement_fields; update this benchmark.")
        replay = np.random.Generator(recorded["kind"]())
        replay.bit_generator.state = recorded["state"]
        noise = replay.standard_normal((2, w.height, w.width), dtype=np.float32)
        noise /= np.abs(noise).max()
        check = np.random.Generator(recorded["kind"]())
        check.bit_generator.state = recorded["state"]
        again = generate(*recorded["args"], **{**recorded["kwargs"], "random_generator": check})
        if not all(np.array_equal(a, b) for a, b in zip(again, recorded["result"])):
            raise RuntimeError("Replaying albumentations' elastic noise did not reproduce its "
                               "field; update this benchmark.")
        realized_map = _map_of(params)
        nominal = nominal_elastic(noise, transform.alpha, transform.sigma)
        warped = transform.apply(parity, **params)
        results.append(map_errors(realized_map, nominal)
                       + (resampling_error(warped, realized_map),))
    return _combine(results)


# ---------------------------------------------------------------------------------------------
# The benchmark.


def single_thread(cv2=None):
    """TensorFlow (and OpenCV, if given) on one thread; False if TF was already initialized."""
    if cv2 is not None:
        cv2.setNumThreads(1)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        return False
    return True


def _time_round_robin(entries, reps, min_sample_time, log):
    """entries: list of (images per call, call(i)); returns per entry the img/s samples."""
    counter = iter(range(2, 2**62))  # the calls' indices (0 and 1: the warm-up)
    samplers = []
    for per_call, call in entries:
        call(0)  # trace, compile, warm
        calls = common.calls_per_sample(min_sample_time, common.seconds(call, 1))

        def sample(per_call=per_call, call=call, calls=calls):
            start = common.clock()
            for _ in range(calls):
                call(next(counter))
            return per_call * calls / (common.clock() - start)
        samplers.append(sample)
    return common.round_robin(samplers, reps, log)


def run_benchmark(workloads, include_albumentations=True, batch=BATCH, reps=10,
                  min_sample_time=0.2, draws=4, log=None):
    """Times and measures every (workload, method); returns the rows.

    Without `include_albumentations`, only our rows (ratios nan): what runs without the
    optional dependency.
    """
    log = log or (lambda message: None)
    alb = load_albumentations() if include_albumentations else None
    rng = np.random.default_rng(0)
    entries, keys, exactness = [], [], {}
    seeds = [_seed(i) for i in range(4096)]  # made outside the timed calls
    for w in workloads:
        image = rng.integers(0, 256, [w.height, w.width, 3], dtype=np.uint8)
        for size in (1, batch):
            images = tf.constant(np.broadcast_to(image, [size, *image.shape]))
            for method, call in our_callables(w, images).items():
                entries.append((size, lambda i, call=call: call(seeds[i % len(seeds)])))
                keys.append((w, method, size))
        exactness[(w.name, OUR_TPS)] = our_tps_exactness(w, draws)
        if w.diffeo:
            exactness[(w.name, OUR_DIFFEO)] = our_diffeo_exactness(w, draws)
        if alb is not None:
            albumentations, functional, _ = alb
            transforms = {ALB_TPS: albumentations_tps(albumentations, w)}
            exactness[(w.name, ALB_TPS)] = albumentations_tps_exactness(
                albumentations, functional, w, draws)
            if w.diffeo:
                transforms[ALB_ELASTIC] = albumentations_elastic(albumentations, functional, w)
                exactness[(w.name, ALB_ELASTIC)] = albumentations_elastic_exactness(
                    albumentations, functional, w, draws)
            for method, transform in transforms.items():
                transform.set_random_seed(0)
                entries.append((1, lambda i, t=transform, x=image: t(image=x)["image"]))
                keys.append((w, method, 1))
        log(f"  {w.name}: set up, exactness measured")
    samples = _time_round_robin(entries, reps, min_sample_time, log)
    timings = common.Timings({(w.name, m, b): s for (w, m, b), s in zip(keys, samples)})
    reference = {OUR_TPS: ALB_TPS, OUR_DIFFEO: ALB_ELASTIC, ALB_TPS: ALB_TPS,
                 ALB_ELASTIC: ALB_ELASTIC}
    rows = []
    for w, method, size in keys:
        key = (w.name, method, size)
        rows.append(Row(w.name, method, size, timings.median(key), timings.spread(key),
                        timings.ratio(key, (w.name, reference[method], 1)),
                        *exactness[(w.name, method)]))
    return rows


def _number(value, digits=3):
    return "-" if not math.isfinite(value) else f"{value:.{digits}g}"


def format_table(rows):
    return "\n".join(common.markdown_table(
        ("size", "method", "batch", "img/s (median)", "IQR", "x albumentations",
         "control points max px", "field max px", "resampling max px"), "llrrrrrrr",
        [(r.workload, r.method, str(r.batch), f"{r.img_per_s:,.0f}", f"{100 * r.spread:.0f}%",
          _number(r.vs_albumentations), _number(r.control_error), _number(r.field_error),
          _number(r.resampling_error)) for r in rows]))


def parse_args(argv):
    parser = common.ArgumentParser("bench.vs_albumentations", __doc__,
                                   "smoke run: 32x32 and 64x48 images, batch 4, 2 rounds")
    parser.add_reps(2, 10)
    parser.add_min_sample_time(0.01, 0.2)
    parser.add_by_quick("draws", 1, 4, "random draws per exactness measure")
    parser.add_workloads(WORKLOADS)
    return parser.parse(argv, at_least={"reps": 1, "draws": 1, "min_sample_time": 0})


def main(argv=None, workloads=None, out=None):
    """Runs the benchmark and prints the report; returns it. Exits with a message if
    albumentations is not installed."""
    args = parse_args(argv)
    _, _, cv2 = load_albumentations()
    run = common.Run(args.quick, args.verbose)
    threads_set = single_thread(cv2)
    if workloads is None:
        workloads = common.select_workloads(args.workloads,
                                            QUICK_WORKLOADS if args.quick else WORKLOADS)
    rows = run_benchmark(workloads, batch=4 if args.quick else BATCH, reps=args.reps,
                         min_sample_time=args.min_sample_time, draws=args.draws, log=run.log)
    import albumentations  # pylint: disable=import-outside-toplevel
    return run.report("deform-tf against albumentations (bench.vs_albumentations)", [
        common.workloads_line(workloads),
        f"albumentations {albumentations.__version__}, OpenCV {cv2.__version__} "
        f"(cv2.getNumThreads()={cv2.getNumThreads()}); TF threads set to 1: "
        f"{threads_set}; {args.reps} round-robin rounds, samples of >= "
        f"{args.min_sample_time:g} s, median img/s, IQR = interquartile range / median; "
        f"exactness: max over {args.draws} draw(s); total {run.elapsed():.0f} s."],
        [format_table(rows)], out)


if __name__ == "__main__":
    main()

"""Input pipelines with in-graph deformation against the training step rate they must feed.

Run as `python -m bench.pipelines` (`--quick` for a smoke run of a few seconds). It measures
examples per second of:

  pipelines    every training stream finished by `pipelines.core.finish(..., training=True,
               deformation=core.Deformation("tps", grid, C))` (as `experiments.datasets`
               builds them):
               Fashion-MNIST (`pipelines.mnist.train_stream` on the embedded subset
               `pipelines/data/fashion_mnist_small`) and CIFAR-10 (`pipelines.cifar10.load`,
               training=True, on a fake binary release written into a temp dir in the real
               format: random bytes, 5 train files of `--cifar_records` records) at batch 128,
               3x3 grid, C = 2; the synthetic task (`pipelines.synthetic.train` with the
               Fashion-MNIST prototypes of the embedded subset, C = 3, 3x3 grid; it deforms in
               its own stream) at batch 128; ImageNet (`pipelines.imagenet.load`, training=True,
               random-resized crop to 224, on fake TFRecord shards: 256 JPEG-encoded 256x320
               smooth images with noise, 4 shards; windows of 1024 encoded records as in
               `experiments.datasets`) at batch 32, 5x5 grid, C = 10.
  training     the launcher's compiled training loop (`train_lib.make_train_steps`: forward,
               backward, SGD with momentum, the warmup/cosine schedule and decoupled weight
               decay, in a `tf.range` loop inside one `tf.function`), on one in-memory batch
               repeated by a `tf.data` iterator: vgg("mnist") and vgg("cifar10") at
               width 0.25 (the quick runs) and 1.0, batch 128; vgg("imagenet") width 0.25 at
               224x224, batch 32.

Each pipeline sample builds a fresh iterator, pulls `--warmup_batches` batches untimed (buffers
fill, threads start, autotuning settles), times the next `--batches` batches, then drops
the iterator (its background threads stop): pipelines never run while something else is timed.
A training sample is one call of as many steps as fill about `--min_sample_time`, after two
warm-up calls. Each pipeline and each training step is thus measured ALONE: on this 2-core machine
the pipeline and the training step compete for the same cores when they run together, so the real
end-to-end rate is below min(pipeline, training). `--reps` round-robin rounds; medians.
The ratio table divides each pipeline's ex/s by the training ex/s of each model it feeds.
Target (issue "Input pipelines"): pipeline >= 3x training consumption on CIFAR-size and
MNIST-size inputs.
"""

import dataclasses
import os
import shutil
import tempfile

import numpy as np

from bench import common  # first: sets the environment before TensorFlow is imported
import tensorflow as tf  # pylint: disable=wrong-import-order

from experiments import training as train_lib
from pipelines import cifar10
from pipelines import core
from pipelines import idx
from pipelines import imagenet
from pipelines import mnist
from pipelines import synthetic

PIPELINE = "pipeline"
TRAINING = "training"
FASHION, CIFAR, SYNTHETIC, IMAGENET = "Fashion-MNIST", "CIFAR-10", "synthetic", "ImageNet"
TARGET = 3.0
SMALL_INPUTS = (FASHION, CIFAR, SYNTHETIC)  # the target applies to these (MNIST/CIFAR size)


@dataclasses.dataclass(frozen=True)
class Settings:
    """Sizes of one benchmark run (the defaults are the issue's)."""

    small_batch: int = 128  # Fashion-MNIST, CIFAR-10, synthetic
    imagenet_batch: int = 32
    cifar_records: int = 2000  # per train file (5 files)
    imagenet_images: int = 256
    imagenet_jpeg_size: tuple = (256, 320)
    imagenet_shards: int = 4
    imagenet_size: int = 224
    imagenet_window: int = 1024  # encoded records permuted together (experiments.datasets's)
    small_grid: int = 3
    small_strength: float = 2.0
    synthetic_strength: float = 3.0
    imagenet_grid: int = 5
    imagenet_strength: float = 10.0
    small_widths: tuple = (0.25, 1.0)
    imagenet_widths: tuple = (0.25,)


QUICK_SETTINGS = Settings(
    small_batch=32, imagenet_batch=4, cifar_records=64, imagenet_images=16,
    imagenet_jpeg_size=(80, 96), imagenet_shards=4, imagenet_size=64, imagenet_window=16,
    imagenet_strength=3.0, small_widths=(0.125,), imagenet_widths=(0.125,))


@dataclasses.dataclass(frozen=True)
class Row:
    kind: str  # PIPELINE or TRAINING
    name: str
    batch: int
    examples_per_s: float  # median
    spread: float  # interquartile range / median


@dataclasses.dataclass(frozen=True)
class Ratio:
    pipeline: str
    model: str
    ratio: float  # pipeline ex/s / training ex/s
    target_applies: bool


def write_fake_cifar10(root, records_per_file, seed=0):
    """Writes a fake CIFAR-10 binary release (random bytes, labels 0..9) under root."""
    rng = np.random.default_rng(seed)
    directory = os.path.join(root, cifar10.BINARY_DIR_NAME)
    os.makedirs(directory, exist_ok=True)
    for name in cifar10.BINARY_FILES["train"] + cifar10.BINARY_FILES["test"]:
        records = rng.integers(0, 256, (records_per_file, cifar10.RECORD_BYTES), dtype=np.uint8)
        records[:, 0] = rng.integers(0, cifar10.NUM_CLASSES, records_per_file)
        with open(os.path.join(directory, name), "wb") as f:
            f.write(records.tobytes())
    return root


def _fake_photo(rng, height, width):
    """A smooth random colour image with mild noise (compresses and decodes like a photo more
    than pure noise does)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    channels = []
    for _ in range(3):
        fy, fx, phase = rng.uniform(3, 30), rng.uniform(3, 30), rng.uniform(0, 6.3)
        channels.append(128 + 80 * np.sin(y / fy + phase) * np.cos(x / fx - phase))
    image = np.stack(channels, axis=-1) + rng.normal(0, 8, (height, width, 3))
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def write_fake_imagenet(root, num_images, size, num_shards, seed=0, split="train"):
    """Writes fake ImageNet shards of `split` (JPEG, 1-based labels) in the standard layout.

    Image k (a smooth random photo of `size` (height, width) pixels, label 1 + k % 1000) goes to
    shard k % num_shards. Returns the mean JPEG size in bytes.
    """
    rng = np.random.default_rng(seed)
    writers = [tf.io.TFRecordWriter(os.path.join(root, f"{split}-{i:05d}-of-{num_shards:05d}"))
               for i in range(num_shards)]
    total_bytes = 0
    for k in range(num_images):
        encoded = tf.io.encode_jpeg(_fake_photo(rng, *size), quality=90).numpy()
        total_bytes += len(encoded)
        example = tf.train.Example(features=tf.train.Features(feature={
            imagenet.ENCODED_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(
                value=[encoded])),
            imagenet.LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(
                value=[1 + k % imagenet.NUM_CLASSES])),
        }))
        writers[k % num_shards].write(example.SerializeToString())
    for writer in writers:
        writer.close()
    return total_bytes / num_images


def _pipelines(settings, tmp):
    """[(name, batch, dataset)] and a description of the fake data."""
    s = settings
    small = core.Deformation("tps", s.small_grid, s.small_strength)
    cifar_root = write_fake_cifar10(os.path.join(tmp, "cifar10"), s.cifar_records)
    imagenet_root = os.path.join(tmp, "imagenet")
    os.makedirs(imagenet_root)
    jpeg_bytes = write_fake_imagenet(imagenet_root, s.imagenet_images, s.imagenet_jpeg_size,
                                     s.imagenet_shards)
    prototypes, _ = mnist.prototypes("fashion_mnist", idx.EMBEDDED_FASHION_MNIST_DIR)
    fashion_images, fashion_labels = mnist.load_arrays("train", "fashion_mnist",
                                                       idx.EMBEDDED_FASHION_MNIST_DIR)
    num_fashion = len(fashion_labels)

    def fashion():
        return core.finish(mnist.train_stream(fashion_images, fashion_labels, seed=0),
                           s.small_batch, training=True, seed=0, deformation=small)

    def cifar():
        return core.finish(cifar10.load("train", cifar_root, training=True, seed=0),
                           s.small_batch, training=True, seed=0, deformation=small)

    def synthetic_task():
        return synthetic.train(prototypes, s.synthetic_strength, s.small_batch, seed=0,
                               grid_size=s.small_grid)

    def imagenet_train():
        return core.finish(
            imagenet.load("train", imagenet_root, training=True, seed=0,
                          image_size=s.imagenet_size, window=s.imagenet_window),
            s.imagenet_batch, training=True, seed=0,
            deformation=core.Deformation("tps", s.imagenet_grid, s.imagenet_strength))

    described = (
        f"{FASHION}: embedded subset, {num_fashion} train images 28x28 padded to 32x32x1, "
        f"{s.small_grid}x{s.small_grid} grid, C={s.small_strength:g}; {CIFAR}: fake binary "
        f"release, 5 x {s.cifar_records} records, augmentation on, "
        f"{s.small_grid}x{s.small_grid} grid, C={s.small_strength:g}; {SYNTHETIC}: 10 "
        f"Fashion-MNIST prototypes, "
        f"{s.small_grid}x{s.small_grid} grid, C={s.synthetic_strength:g}; {IMAGENET}: "
        f"{s.imagenet_images} fake JPEGs {s.imagenet_jpeg_size[0]}x{s.imagenet_jpeg_size[1]} "
        f"(mean {jpeg_bytes / 1e3:.0f} kB) in {s.imagenet_shards} shards, random-resized crop to "
        f"{s.imagenet_size}, {s.imagenet_grid}x{s.imagenet_grid} grid, "
        f"C={s.imagenet_strength:g}; stateless epoch orders (pipelines.order), ImageNet windows "
        f"of {s.imagenet_window} records")
    # Built once (reading the IDX files, tracing the maps); every sample iterates afresh.
    entries = [(FASHION, s.small_batch, fashion()), (CIFAR, s.small_batch, cifar()),
               (SYNTHETIC, s.small_batch, synthetic_task()),
               (IMAGENET, s.imagenet_batch, imagenet_train())]
    return entries, described


def model_name(config, width):
    return f"vgg({config!r}, width={width:g})"


def _training_steps(config, width, batch, input_shape, num_classes):
    """fn(num_steps tensor) -> loss sum: the launcher's compiled training loop
    (`train_lib.make_train_steps`) on one in-memory batch, repeated."""
    train_config = train_lib.TrainConfig(
        experiment="bench", model=f"vgg_{config}_max_pool", dataset="synthetic",
        model_options={"width": width}, input_shape=tuple(input_shape),
        num_classes=num_classes, seed=0, batch_size=batch,
        train_steps=100_000, warmup_steps=100)
    strategy = tf.distribute.get_strategy()
    state = train_lib.build_state(train_config, strategy)
    run_steps = train_lib.make_train_steps(train_config, state, strategy)
    images = tf.random.stateless_normal([batch, *input_shape], [5, 6])
    labels = tf.random.stateless_uniform([batch], [7, 8], 0, num_classes, tf.int32)
    batches = iter(tf.data.Dataset.from_tensors((images, labels)).repeat())
    return lambda num_steps: run_steps(batches, num_steps)[0]


def _training(settings):
    """[(name, batch, run_steps, feeds)] where feeds lists the pipelines the model trains on."""
    s = settings
    entries = []
    for width in s.small_widths:
        entries.append((model_name("mnist", width), s.small_batch,
                        _training_steps("mnist", width, s.small_batch, (32, 32, 1), 10),
                        (FASHION, SYNTHETIC)))
    for width in s.small_widths:
        entries.append((model_name("cifar10", width), s.small_batch,
                        _training_steps("cifar10", width, s.small_batch, (32, 32, 3), 10),
                        (CIFAR,)))
    for width in s.imagenet_widths:
        entries.append((model_name("imagenet", width), s.imagenet_batch,
                        _training_steps("imagenet", width, s.imagenet_batch,
                                        (s.imagenet_size, s.imagenet_size, 3), 1000),
                        (IMAGENET,)))
    return entries


def _time_pipeline(dataset, warmup_batches, batches):
    iterator = iter(dataset)  # a fresh pipeline: new threads, empty buffers
    for _ in range(warmup_batches):
        next(iterator)
    start = common.clock()
    count = 0
    for _ in range(batches):
        images, _ = next(iterator)
        count += int(images.shape[0])
    elapsed = common.clock() - start
    del iterator
    return count / elapsed


def run_benchmark(settings, reps=3, batches=40, imagenet_batches=8, warmup_batches=3,
                  min_sample_time=2.0, log=None):
    """Times every pipeline and training step, round-robin; returns (rows, ratios, described).

    Args:
      settings: a `Settings`.
      reps: round-robin rounds (samples per entry).
      batches: timed batches per pipeline sample (Fashion-MNIST, CIFAR-10, synthetic).
      imagenet_batches: timed batches per ImageNet pipeline sample.
      warmup_batches: untimed batches pulled from each fresh iterator first.
      min_sample_time: seconds; a training sample is ceil(min_sample_time / step time) steps.
      log: optional callable(str) for progress messages.
    """
    log = log or (lambda message: None)
    tmp = tempfile.mkdtemp(prefix="bench_pipelines_")
    try:
        pipes, described = _pipelines(settings, tmp)
        entries = []  # (kind, name, batch, sample_fn, feeds)
        for name, batch, dataset in pipes:
            count = imagenet_batches if name == IMAGENET else batches
            start = common.clock()
            rate = _time_pipeline(dataset, warmup_batches, count)
            log(f"  warm-up {name:14s} {common.clock() - start:6.2f} s, {rate:8.0f} ex/s")
            entries.append((PIPELINE, name, batch,
                            lambda dataset=dataset, count=count: _time_pipeline(
                                dataset, warmup_batches, count), ()))
        for name, batch, run_steps, feeds in _training(settings):
            one_step = lambda run_steps=run_steps: run_steps(tf.constant(1)).numpy()
            first, step = common.seconds(one_step), common.seconds(one_step)
            steps = common.calls_per_sample(min_sample_time, step)
            log(f"  warm-up {name:28s} first call {first:6.2f} s, then {step:6.3f} s/step; "
                f"{steps} step(s) per sample")

            def sample(run_steps=run_steps, steps=steps, batch=batch):
                return steps * batch / common.seconds(
                    lambda: run_steps(tf.constant(steps)).numpy())

            entries.append((TRAINING, name, batch, sample, feeds))
        samples = common.round_robin([e[3] for e in entries], reps, log)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    timings = common.Timings({name: values for (_, name, _, _, _), values
                              in zip(entries, samples)})
    rows = [Row(kind, name, batch, timings.median(name), timings.spread(name))
            for kind, name, batch, _, _ in entries]
    ratios = []
    for kind, name, _, _, feeds in entries:
        if kind != TRAINING:
            continue
        for pipeline in feeds:
            ratios.append(Ratio(pipeline, name, timings.ratio(pipeline, name),
                                pipeline in SMALL_INPUTS))
    ratios.sort(key=lambda r: [p for p, _, _ in pipes].index(r.pipeline))
    return rows, ratios, described


def format_tables(rows, ratios):
    """Two markdown tables: every entry's rate, then pipeline / training ratios."""
    lines = common.markdown_table(
        ("kind", "entry", "batch", "ex/s (median)", "IQR"), "llrrr",
        [(r.kind, r.name, str(r.batch), f"{r.examples_per_s:,.1f}", f"{100 * r.spread:.0f}%")
         for r in rows])
    lines += [""] + common.markdown_table(
        ("pipeline", "feeds model", "pipeline / training", "target >= 3x"), "llrl",
        [(r.pipeline, r.model, f"{r.ratio:.2f}",
          ("met" if r.ratio >= TARGET else "NOT met") if r.target_applies else "n/a")
         for r in ratios])
    return "\n".join(lines)


def parse_args(argv):
    parser = common.ArgumentParser("bench.pipelines", __doc__,
                                   "smoke run: tiny batches, data and widths; 1 round")
    parser.add_reps(1, 3)
    parser.add_by_quick("batches", 3, 40, "timed batches per small-input pipeline sample")
    parser.add_by_quick("imagenet_batches", 2, 8, "timed batches per ImageNet pipeline sample")
    parser.add_argument("--warmup_batches", type=int, default=3,
                        help="untimed batches pulled from each fresh iterator first")
    parser.add_min_sample_time(0.01, 2.0, "seconds of training steps per sample")
    parser.add_argument("--cifar_records", type=int, default=None,
                        help="records per fake CIFAR-10 file; default 2000")
    return parser.parse(argv, at_least={"reps": 1, "batches": 1, "imagenet_batches": 1,
                                        "warmup_batches": 0})


def main(argv=None, settings=None, out=None):
    """Runs the benchmark and prints the report; returns it as a string.

    `settings` overrides the issue's (or --quick's) sizes, e.g. tiny ones in tests.
    """
    args = parse_args(argv)
    if settings is None:
        settings = QUICK_SETTINGS if args.quick else Settings()
    if args.cifar_records is not None:
        settings = dataclasses.replace(settings, cifar_records=args.cifar_records)
    run = common.Run(args.quick, args.verbose)
    rows, ratios, described = run_benchmark(
        settings, reps=args.reps, batches=args.batches, imagenet_batches=args.imagenet_batches,
        warmup_batches=args.warmup_batches, min_sample_time=args.min_sample_time, log=run.log)
    return run.report("Input pipelines vs training consumption (bench.pipelines)", [
        "Pipelines: " + described + ".",
        f"Each entry measured alone (pipelines and training compete for the cores when run "
        f"together). {args.reps} round-robin rounds; pipeline samples: fresh iterator, "
        f"{args.warmup_batches} warm-up batches, then {args.batches} timed batches "
        f"({args.imagenet_batches} for ImageNet); training samples >= {args.min_sample_time:g} "
        "s of steps on one in-memory batch; " + run.medians_note("ex/s")],
        [format_tables(rows, ratios)], out)


if __name__ == "__main__":
    main()

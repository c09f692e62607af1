"""Checkpoint size against the size of the model and optimizer variables, per data set.

Run as `python -m bench.checkpoint_size` (`--quick` for a smoke run). For each workload it writes
data in the real on-disk format into a temp dir, runs the training launcher in a subprocess for
`--steps` steps with one checkpoint at the end, and compares the checkpoint's bytes on disk
(`ckpt-N.data-*` + `ckpt-N.index`) with the bytes of the variables it holds (every tensor but
the object-graph proto: model, optimizer state, step; element count x dtype size) and with the
bytes of the model's own weights (the model loaded back with `deform_tf.model_io.load_model`):

  imagenet  `launch.imagenet` on fake ImageNet shards (JPEG `image/encoded`, 1-based labels,
            standard shard names; `--imagenet_images` training images of 240x320 in 8 shards),
            the full-width ImageNet VGG (13 convs, max_pool), batch 4, images cropped to
            `--image_size` px (the model's variables do not depend on the image size).
  cifar10   `launch.cifar10` on a fake CIFAR-10 binary release (5 x 40 = 200 training images),
            width 0.125, batch 16, `cifar10_max_pool.cfg`.

A checkpoint holds the model, the optimizer state (SGD momentum: one slot per trainable variable)
and the step, not the input pipeline (its position is the step, see `pipelines.order`): the ratio
checkpoint / (model + optimizer) stays ~1 whatever the data set.
"""

import dataclasses
import glob
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

from bench import common  # first: sets the environment before TensorFlow is imported
import tensorflow as tf  # pylint: disable=wrong-import-order

from bench import pipelines as bench_pipelines
from deform_tf import model_io

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass(frozen=True)
class Row:
    workload: str
    data: str  # what the data set is
    checkpoint_bytes: int  # ckpt-N.data-* + ckpt-N.index
    variable_bytes: int  # every variable in the checkpoint: model, optimizer state, step
    model_bytes: int  # the model's weights alone
    seconds: float  # the launcher run, wall clock


OBJECT_GRAPH = "_CHECKPOINTABLE_OBJECT_GRAPH"  # the checkpoint's structure, not a variable


def variable_bytes(prefix):
    """Bytes of the variables in a checkpoint (all tensors but the object-graph proto)."""
    reader = tf.train.load_checkpoint(prefix)
    shapes = reader.get_variable_to_shape_map()
    dtypes = reader.get_variable_to_dtype_map()
    return sum(int(np.prod(shapes[n])) * dtypes[n].size for n in shapes if n != OBJECT_GRAPH)


def model_bytes(checkpoint_dir):
    """Bytes of the weights of the model in a launcher's checkpoint directory."""
    model = model_io.load_model(checkpoint_dir)
    return sum(int(np.prod(w.shape)) * tf.as_dtype(w.dtype).size for w in model.weights)


def checkpoint_bytes(prefix):
    """Bytes on disk of one checkpoint (data shards and index)."""
    return sum(os.path.getsize(p) for p in glob.glob(prefix + ".*"))


def _run_launcher(module, args, env):
    started = common.clock()
    result = subprocess.run([sys.executable, "-m", module] + args, cwd=REPO, env=env,
                            capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"{module} failed:\n{result.stderr[-3000:]}")
    return common.clock() - started


def measure(workload, module, launcher_args, data, out_dir, steps, env):
    """Runs one launcher for `steps` steps and measures its last checkpoint: a Row."""
    seconds = _run_launcher(module, launcher_args + [
        f"--output_dir={out_dir}", f"--train_steps={steps}", f"--checkpoint_every={steps}",
        "--num_measure_images=4", "--measure_every=0"], env)
    prefix = os.path.join(out_dir, "checkpoints", f"ckpt-{steps}")
    return Row(workload, data, checkpoint_bytes(prefix), variable_bytes(prefix),
               model_bytes(os.path.dirname(prefix)), seconds)


def run_benchmark(args, tmp):
    env = dict(os.environ, XDG_CACHE_HOME=os.path.join(tmp, "cache"))
    rows = []
    if "imagenet" in args.workloads:
        data_dir = os.path.join(tmp, "imagenet")
        os.makedirs(data_dir)
        jpeg = bench_pipelines.write_fake_imagenet(data_dir, args.imagenet_images, (240, 320), 8)
        bench_pipelines.write_fake_imagenet(data_dir, 8, (240, 320), 2, seed=1,
                                            split="validation")
        shards = sum(os.path.getsize(p) for p in glob.glob(os.path.join(data_dir, "train-*")))
        rows.append(measure(
            "imagenet", "launch.imagenet",
            [f"--flagfile={REPO}/launch/configs/imagenet_max_pool.cfg",
             f"--data_dir={data_dir}", f"--width={args.imagenet_width:g}",
             f"--image_size={args.image_size}", "--batch_size=4", "--eval_grid_size=3",
             "--eval_strength=2"],
            f"{args.imagenet_images} JPEGs 240x320 (mean {jpeg / 1e3:.0f} kB) in 8 train shards, "
            f"{shards / 1e6:.1f} MB; width {args.imagenet_width:g}, {args.image_size} px crops",
            os.path.join(tmp, "run_imagenet"), args.steps, env))
    if "cifar10" in args.workloads:
        data_dir = bench_pipelines.write_fake_cifar10(os.path.join(tmp, "cifar10"), 40)
        rows.append(measure(
            "cifar10", "launch.cifar10",
            [f"--flagfile={REPO}/launch/configs/cifar10_max_pool.cfg",
             f"--data_dir={data_dir}", "--width=0.125", "--batch_size=16"],
            "binary release, 200 training images; width 0.125",
            os.path.join(tmp, "run_cifar10"), args.steps, env))
    return rows


def format_table(rows):
    return "\n".join(common.markdown_table(
        ("workload", "data", "checkpoint", "variables (model, optimizer, step)", "model",
         "checkpoint / variables", "run"), "llrrrrr",
        [(r.workload, r.data, f"{r.checkpoint_bytes:,} B", f"{r.variable_bytes:,} B",
          f"{r.model_bytes:,} B", f"{r.checkpoint_bytes / r.variable_bytes:.3f}",
          f"{r.seconds:.0f} s") for r in rows]))


def parse_args(argv):
    parser = common.ArgumentParser(
        "bench.checkpoint_size", __doc__,
        "smoke run: ImageNet net at width 1/32, 16 images, 1 step", verbose=False)
    parser.add_argument("--workloads", default="imagenet,cifar10",
                        help="comma-separated subset of imagenet,cifar10")
    parser.add_by_quick("steps", 1, 2, "training steps (one checkpoint at the end)")
    parser.add_by_quick("imagenet_images", 16, 512, "fake ImageNet training images")
    parser.add_by_quick("imagenet_width", 0.03125, 1.0, "ImageNet VGG width (1: the paper's)",
                        type=float)
    parser.add_argument("--image_size", type=int, default=64,
                        help="ImageNet crop size in px (the variables do not depend on it)")
    args = parser.parse(argv, positive=("steps", "imagenet_images", "imagenet_width"))
    args.workloads = tuple(w.strip() for w in args.workloads.split(",") if w.strip())
    if not args.workloads or set(args.workloads) - {"imagenet", "cifar10"}:
        parser.error("--workloads must be a subset of imagenet,cifar10")
    return args


def main(argv=None, out=None):
    """Runs the benchmark and prints the report; returns it as a string."""
    args = parse_args(argv)
    run = common.Run(args.quick)
    tmp = tempfile.mkdtemp(prefix="bench_checkpoint_size_")
    try:
        rows = run_benchmark(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return run.report("Checkpoint size vs model + optimizer variables (bench.checkpoint_size)", [
        f"{args.steps} training step(s), one checkpoint at the end; SGD with momentum (one slot "
        "per trainable variable)."], [format_table(rows)], out)


if __name__ == "__main__":
    main()

"""The experiment grid behind the paper's figures, per profile, and running it.

A `Run` is one training launcher invocation: the launcher module, the settings it overrides
(`experiments.settings`, which the launchers take as flags of the same names), and its output
sub-directory. `run_grid` executes runs in this process through the same
`experiments.settings.build_run` / `experiments.training.train` path as the launchers (so a run
started here and one started with `Run.command()` on a cluster write the same files), skipping
runs that finished (their `final.json` exists) and resuming interrupted ones.

Profiles (`PROFILES`; each function's docstring says what it runs and how it was sized):
  micro     tiny models, a handful of steps: the tests' end-to-end check.
  quick     the embedded Fashion-MNIST subset, width 0.125: under 15 minutes on 2 CPU cores.
  standard  the full Fashion-MNIST, width 0.5: under 2 hours on 2 CPU cores.
  paper     the paper's settings on CIFAR-10 and ImageNet, for a cluster.

The flagfiles in launch/configs/ are generated from the same grid (`flagfiles`, written by
`python -m launch.write_configs`), so a flagfile and the run of the grid it stands for agree.
"""

import dataclasses
import os
import textwrap
import time
from typing import Optional

from absl import logging
import keras

from deform_tf import models
from experiments import settings as settings_lib
from experiments import training

# The downsampling variants (`models.DOWNSAMPLING`) that the paper's finding 1 sets apart.
POOLED = ("max_pool", "avg_pool")
NOT_POOLED = ("subsample", "strided", "strided_relu")
SIGMAS = (0.0, 0.5, 1.0, 2.0)  # smooth init, pixels (docs/method.md#models)
STRENGTHS = (1.0, 2.0, 3.0, 4.0)  # synthetic task's C, pixels (docs/method.md#data)


@dataclasses.dataclass(frozen=True)
class Run:
    """One training run of the grid."""

    name: str  # output sub-directory, "<group>/<condition>/seed<k>"
    group: str  # "real", "random", "smooth_init", "synthetic" or "imagenet"
    condition: str  # downsampling variant, sigma or strength
    seed: int
    launcher: str  # module, e.g. "launch.cifar10"
    settings: dict  # overrides of the launcher's settings (flag names)
    spec_fields: dict = dataclasses.field(default_factory=dict)  # launcher-specific flags

    def flags(self, exclude=()):
        """The run's settings as launcher flags ("--key=value", sorted), None values left out."""
        return settings_lib.as_flags({**self.settings, **self.spec_fields}, exclude)

    def command(self, root):
        """The equivalent launcher command line."""
        return " ".join([f"python -m {self.launcher}",
                         f"--output_dir={os.path.join(root, self.name)}", *self.flags()])


@dataclasses.dataclass(frozen=True)
class Profile:
    """Grid sizes and training settings of a profile (see the profile functions below)."""

    name: str
    dataset: str
    width: float
    batch_size: int
    train_steps: Optional[int]  # None: the launcher's epochs
    seeds: int
    measure_every: int
    num_measure_images: int
    learning_rate: float
    variants: tuple = models.DOWNSAMPLING
    sigmas: tuple = SIGMAS
    strengths: tuple = STRENGTHS
    synthetic_steps: int = 150
    synthetic_width: Optional[float] = None  # None: `width`
    synthetic_seeds: Optional[int] = None  # seeds of the smallest and largest C; None: `seeds`
    max_train_examples: Optional[int] = None
    imagenet_seeds: int = 0
    allow_embedded: bool = True  # may train on the embedded Fashion-MNIST subset
    # Seeds of the measurements at init (finding 1's variants, the smooth-init sweep); None:
    # `seeds`. Seeds past `seeds` are measured by init-only runs (group "init").
    init_seeds: Optional[int] = None
    # Random-label runs: the first N training examples and their own step count (None: as the
    # real-label runs), sized so that the nets fit their random labels (FIT_ACCURACY).
    random_train_examples: Optional[int] = None
    random_steps: Optional[int] = None

    @property
    def title(self):
        data = {"fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}.get(self.dataset,
                                                                          self.dataset)
        steps = f"{self.train_steps} steps" if self.train_steps else "the launcher's epochs"
        title = (f"{self.name} profile: {data}, CIFAR-10 net at width {self.width:g}, {steps}, "
                 f"{self.seeds} seeds")
        if self.random_train_examples or self.random_steps:
            title += (f"; random labels on {self.random_train_examples or 'all'} examples, "
                      f"{self.random_steps or self.train_steps or 'the launcher'} steps")
        if (self.init_seeds or self.seeds) > self.seeds:
            title += f"; {self.init_seeds} seeds at init"
        return title


def micro():
    """Tiny models, a handful of steps, 2 seeds: the tests' end-to-end check (a minute)."""
    return Profile("micro", "fashion_mnist", width=0.0625, batch_size=16, train_steps=4,
                   seeds=2, measure_every=2, num_measure_images=8, learning_rate=0.02,
                   variants=("max_pool", "strided"), sigmas=(0.0, 1.0), strengths=(1.0, 3.0),
                   synthetic_steps=4, max_train_examples=256)


def quick():
    """README command 1: every finding and figure in under 15 minutes on 2 CPU cores.

    Fashion-MNIST (the embedded 4,000/1,000-image subset unless a full copy is found) on the
    CIFAR-10 net at width 0.125, 150 steps of batch 64, 3 seeds; random labels on the first 512
    training examples for 400 steps; 12 seeds at init (findings 1 and 3): 141 runs.

    The synthetic task (finding 4) runs at width 0.25, with 6 seeds at C = 1 and C = 4 (the pair
    finding 4 compares, seed by seed) and 3 at C = 2, 3. Sizing, from a pilot of C = 1 vs 4 at
    150 steps: at width 0.125 the per-seed paired difference of the mean smoothness measure
    varied with a standard deviation of 0.026 (the first conv's 4 filters are noisy), at width
    0.25 with 0.0125 around a mean difference of 0.019 (10 seeds: 0.023 on seeds 0-4, 0.015 on
    seeds 5-9); 6 seeds then show it (> 2 SE) with probability 0.93 (0.79 for an effect of
    0.015; simulated with the t-spread of 6-seed SEs). The profile's seeds 0-5 are pilot seeds,
    so its finding-4 numbers repeat the pilot's. 600 steps instead of 150 gave the same
    difference at width 0.125. A run of this size is dominated by per-run compilation, so the
    wider synthetic net adds ~2 s per run, the 6 extra runs ~1.5 minutes.

    Random labels: the first 512 training examples for 400 steps (50 epochs), the real-label
    runs' learning rate and weight decay, so that the nets fit their random labels (training
    accuracy >= 0.9, the regime of Zhang et al. 2017). Pilot (2026-12-07, 2-core machine
    loaded by other jobs): on 512 examples every variant reached training accuracy 0.98-1.00
    after 300 steps (avg_pool, the slowest to fit, 0.984; 1.000 after 400 steps at seeds 0-2,
    with or without weight decay), 1,024 examples took 600 steps to reach 0.956 with avg_pool.
    400 steps cost 10-14 s per run under load.

    Init (findings 1 and 3; no training, ~2-4 s per run under load): 12 seeds, i.e. 9
    init-only runs per variant besides the 3 trained ones, and 12 per sigma. Sizing, from the
    3-seed run of this profile before: finding 1's weakest per-seed gap, subsample - max_pool,
    was +0.115 with a seed-to-seed std of ~0.10 and finding 3's weakest layer +0.23 with ~0.15;
    with 12 seeds the SEs become ~0.029 and ~0.042, so effects of 0.08 and 0.12 are shown
    (> 2 SE) with probability 0.8, and effects as large as those measured with probability
    ~0.98 and ~1.
    """
    return Profile("quick", "fashion_mnist", width=0.125, batch_size=64, train_steps=150,
                   seeds=3, measure_every=50, num_measure_images=64, learning_rate=0.05,
                   synthetic_width=0.25, synthetic_seeds=6, init_seeds=12,
                   random_train_examples=512, random_steps=400)


def standard():
    """The full Fashion-MNIST, the CIFAR-10 net at width 0.5: about 2 hours on 2 CPU cores.

    60,000/10,000 images (Debian's dataset-fashion-mnist or --data_dir; `launch.reproduce`
    refuses the embedded subset), 940 steps of batch 128 (2 epochs) at a peak learning rate of
    0.05 with cosine decay, measured every 235 steps on N = 128 images, 3 seeds; random labels
    on the first 2,048 training examples for 800 steps, so that the nets fit them; 10 seeds at
    init (findings 1 and 3); the synthetic task at the same width for 300 steps, with 6 seeds
    at C = 1 and C = 4 (the pair finding 4 compares) and 3 at C = 2, 3: 123 runs. The same
    profile runs on CIFAR-10 with `--dataset=cifar10 --data_dir=...`.

    Sizing, from timings of the launcher's training on this machine (2026-11-29, one process
    per measurement, full Fashion-MNIST):
      - width 0.5, batch 128, max_pool: 7.3-7.6 steps/s on a quiet machine (60 steps; graph and
        XLA alike). With other jobs on the 2 cores (1-minute load 7-8) the five variants ran at
        3.1-5.8 steps/s, max_pool at 4.3-4.7: loaded runs take ~1.6x as long.
      - per-run overhead (tracing, compiling the measurement, loading 60,000 images, evaluating
        10,000): ~17 s quiet; a later measurement 0.8 s.
      - a real-label avg_pool run at these settings (the slowest learner of the five after 80
        steps) reached test accuracy 0.916 in 304 s under load 8, i.e. ~190 s quiet (after 80
        steps the five variants were at 0.78-0.85). Shorter runs were not tried: 2 epochs keep
        a margin above 0.90.
      - the synthetic task at width 0.5, C = 1 vs 4, 300 steps, seeds 0-3: 80-133 s per run
        under load 7-8 (~60 s quiet); the per-seed paired difference of the mean smoothness
        measure was 0.0072 ± 0.0027 (SE; seed-to-seed std 0.0055), which 6 seeds show (> 2 SE)
        with probability ~0.87 (simulated with the t-spread of 6-seed SEs), 3 seeds with ~0.65.
      - random labels (2026-12-07, lightly loaded): avg_pool, the slowest of the five to fit
        in the quick profile's pilot, on the first 2,048 training examples for 800 steps (50
        epochs) at these settings reached training accuracy 1.000 (test 0.091) in 104 s.
    The 3-seed run of this profile before measured finding 1's weakest gap at +0.150 ± 0.072
    (seed-to-seed std ~0.125): with 10 seeds at init its SE becomes ~0.04, so an effect of
    0.11 is shown (> 2 SE) with probability 0.8, one as large as measured with ~0.96.
    So the 15 real-label runs take ~15 x 190 s = 48 min quiet (with the training set's
    evaluation), the 15 random-label runs ~15 x 110 s = 28 min, the 35 init-only runs of
    finding 1 and the 40 of the smooth-init sweep ~75 x 10 s = 13 min, the 18 synthetic runs
    ~18 min: ~1 h 50 min on a quiet machine. Fewer steps or a narrower net would miss the
    accuracy or the width the profile is for; more trained seeds would not fit.
    """
    return Profile("standard", "fashion_mnist", width=0.5, batch_size=128, train_steps=940,
                   seeds=3, measure_every=235, num_measure_images=128, learning_rate=0.05,
                   synthetic_steps=300, synthetic_seeds=6, allow_embedded=False,
                   init_seeds=10, random_train_examples=2048, random_steps=800)


def paper():
    """The paper's settings, for a cluster (e.g. via --print_commands).

    CIFAR-10 (5 variants x 5 seeds, real and random labels, the smooth-init sweep) for the
    launcher's 100 epochs, the synthetic task C = 1..4 (5 seeds, 5,000 steps), ImageNet max_pool
    vs strided_relu (2 seeds).
    """
    return Profile("paper", "cifar10", width=1.0, batch_size=128, train_steps=None,
                   seeds=5, measure_every=2000, num_measure_images=128, learning_rate=0.05,
                   synthetic_steps=5000, imagenet_seeds=2, allow_embedded=False)


PROFILES = {p.name: p for p in (micro(), quick(), standard(), paper())}


def grid(profile, data_dir=None, imagenet_dir=None):
    """The runs of a profile, in execution order (cheap groups first).

    `data_dir` is the profile's data set's; the synthetic task reads its Fashion-MNIST
    prototypes from it only when that data set is Fashion-MNIST (else from the standard
    locations).
    """
    base = dict(dataset=profile.dataset, data_dir=data_dir,
                width=profile.width, batch_size=profile.batch_size,
                train_steps=profile.train_steps, learning_rate=profile.learning_rate,
                measure_every=profile.measure_every,
                num_measure_images=profile.num_measure_images,
                max_train_examples=profile.max_train_examples,
                checkpoint_every=max(profile.measure_every, 1))
    if profile.train_steps is not None:
        base["warmup_epochs"] = 0.0
    runs = []
    seeds = range(profile.seeds)
    init_seeds = range(max(profile.init_seeds or 0, profile.seeds))
    for sigma in profile.sigmas:
        for seed in init_seeds:
            runs.append(Run(f"smooth_init/sigma{sigma:g}/seed{seed}", "smooth_init", f"{sigma:g}",
                            seed, "launch.cifar10",
                            dict(base, seed=seed, downsampling="max_pool",
                                 smooth_init_sigma=sigma, train_steps=0)))
    # Finding 1 at more seeds: the real-label runs measure seeds < `seeds` at init, these the rest.
    for variant in profile.variants:
        for seed in init_seeds[profile.seeds:]:
            runs.append(Run(f"init/{variant}/seed{seed}", "init", variant, seed, "launch.cifar10",
                            dict(base, seed=seed, downsampling=variant, train_steps=0)))
    random = dict(base, random_labels=True)
    if profile.random_train_examples:
        random["max_train_examples"] = profile.random_train_examples
    if profile.random_steps:
        random["train_steps"] = profile.random_steps
    for group, settings in (("real", dict(base, random_labels=False)), ("random", random)):
        for variant in profile.variants:
            for seed in seeds:
                runs.append(Run(f"{group}/{variant}/seed{seed}", group, variant, seed,
                                "launch.cifar10", dict(settings, seed=seed, downsampling=variant)))
    synthetic = {k: v for k, v in base.items() if k not in ("dataset", "max_train_examples")}
    synthetic.update(downsampling="max_pool", train_steps=profile.synthetic_steps,
                     width=profile.synthetic_width or profile.width,
                     data_dir=data_dir if profile.dataset == "fashion_mnist" else None)
    extremes = (min(profile.strengths), max(profile.strengths))  # finding 4 compares these
    for strength in profile.strengths:
        count = profile.synthetic_seeds if strength in extremes else None
        for seed in range(count or profile.seeds):
            runs.append(Run(f"synthetic/C{strength:g}/seed{seed}", "synthetic", f"{strength:g}",
                            seed, "launch.synthetic_mnist", dict(synthetic, seed=seed),
                            dict(synthetic_strength=strength)))
    for variant in ("max_pool", "strided_relu"):
        for seed in range(profile.imagenet_seeds):
            runs.append(Run(f"imagenet/{variant}/seed{seed}", "imagenet", variant, seed,
                            "launch.imagenet",
                            dict(seed=seed, downsampling=variant, data_dir=imagenet_dir,
                                 measure_every=10000)))
    return runs


# Settings a flagfile leaves to the command line.
COMMAND_LINE_SETTINGS = ("seed", "data_dir")
_GENERATED = "Generated from experiments/study/grid.py by `python -m launch.write_configs`."


@dataclasses.dataclass(frozen=True)
class Flagfile:
    """A flagfile of launch/configs: one run of a grid without its seed and data location."""

    name: str  # file name, e.g. "cifar10_max_pool.cfg"
    run: Run
    description: str  # the comment at the top of the file

    def text(self):
        """The file's contents: the description, then one "--flag=value" per line."""
        lines = [f"# {line}" for line in textwrap.wrap(self.description, 96)]
        lines.append(f"# {_GENERATED}")
        lines += self.run.flags(exclude=COMMAND_LINE_SETTINGS)
        return "\n".join(lines) + "\n"


def imagenet_smoke_run():
    """The ImageNet net (13 convs, 5 downsamplings) at width 1/16 on 32x32 Fashion-MNIST."""
    return Run("imagenet_quick", "imagenet", "max_pool", 0, "launch.imagenet",
               dict(dataset="fashion_mnist", architecture="imagenet", downsampling="max_pool",
                    width=0.0625, batch_size=64, learning_rate=0.05, train_steps=200,
                    warmup_epochs=0.0, eval_grid_size=3, eval_strength=2.0,
                    num_measure_images=64, checkpoint_every=100))


def flagfiles():
    """The flagfiles of launch/configs, from the grids: each condition of the paper profile,
    and a quick run per launcher (two runs of the quick profile, the ImageNet smoke test)."""
    paper_runs = {
        "real": ("cifar10_{}.cfg", "CIFAR-10, {} downsampling (paper Fig. 3c/d, 6b)"),
        "random": ("cifar10_random_labels_{}.cfg",
                   "CIFAR-10 with random labels, {} downsampling (paper Fig. 6c, 7)"),
        "smooth_init": ("cifar10_smooth_init_sigma{}.cfg", "Smooth-init sweep (paper Fig. 4): "
                        "the CIFAR-10 net at init, filters smoothed with sigma = {} px"),
        "synthetic": ("synthetic_c{}.cfg", "Synthetic prototype task with C = {} px (paper "
                      "Fig. 5)"),
        "imagenet": ("imagenet_{}.cfg", "ImageNet, {} downsampling (paper Fig. 3a/b, 6a)"),
    }
    files = []
    for run in grid(PROFILES["paper"]):
        if run.seed == 0:
            name, description = paper_runs[run.group]
            files.append(Flagfile(
                name.format(run.condition), run,
                description.format(run.condition) + ": the paper profile's run (experiments/"
                "study/grid.py). Give --data_dir, --output_dir and --seed (0-"
                f"{PROFILES['paper'].seeds - 1} there)."))
    quick_runs = {r.name: r for r in grid(PROFILES["quick"])}
    minutes = "Quick run (minutes on 2 CPU cores, the embedded Fashion-MNIST subset unless a " \
              "full copy is found): "
    files += [
        Flagfile("cifar10_quick.cfg", quick_runs["real/max_pool/seed0"],
                 minutes + "the quick profile's max_pool run, the CIFAR-10 net at width "
                 f"{PROFILES['quick'].width:g}. Give --output_dir."),
        Flagfile("synthetic_quick.cfg", quick_runs["synthetic/C3/seed0"],
                 minutes + "the quick profile's synthetic task with C = 3 px. Give "
                 "--output_dir."),
        Flagfile("imagenet_quick.cfg", imagenet_smoke_run(),
                 minutes + "the ImageNet architecture at width 1/16 on 32x32 images, a smoke "
                 "test of its code path, not an ImageNet result. Give --output_dir."),
    ]
    return files


def write_flagfiles(directory):
    """Writes every flagfile of `flagfiles()` into `directory`; returns the names it changed."""
    os.makedirs(directory, exist_ok=True)
    changed = []
    for flagfile in flagfiles():
        path = os.path.join(directory, flagfile.name)
        text = flagfile.text()
        if os.path.exists(path):
            with open(path) as f:
                if f.read() == text:
                    continue
        with open(path, "w") as f:
            f.write(text)
        changed.append(flagfile.name)
    return changed


def is_finished(run, root):
    return os.path.exists(os.path.join(root, run.name, "final.json"))


def experiment_of(run):
    """The experiment (a key of `experiments.settings.PRESETS`) of a run's launcher."""
    return run.launcher.rsplit(".", 1)[-1]


def execute(run, root):
    """Trains one run in this process (same code path as its launcher); returns final.json."""
    experiment = experiment_of(run)
    run_settings = settings_lib.default_settings(experiment)
    run_settings.update(run.settings)
    config, data = settings_lib.build_run(experiment, run_settings, run.spec_fields or None)
    try:
        return training.train(config, data, os.path.join(root, run.name))
    finally:
        keras.backend.clear_session()


def run_grid(runs, root, progress=logging.info):
    """Executes the unfinished runs; logs runs done / total and an ETA."""
    todo = [r for r in runs if not is_finished(r, root)]
    done = len(runs) - len(todo)
    if done:
        progress(f"{done} of {len(runs)} runs already finished in {root}; skipping them.")
    started = time.time()
    for k, run in enumerate(todo, start=1):
        progress(f"[{done + k - 1}/{len(runs)}] {run.name}")
        execute(run, root)
        elapsed = time.time() - started
        eta = elapsed / k * (len(todo) - k)
        progress(f"[{done + k}/{len(runs)}] {run.name} done; {elapsed:.0f} s so far, "
                 f"ETA {eta:.0f} s")

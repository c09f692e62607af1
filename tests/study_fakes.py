"""Hand-made study results for the tests of `experiments.study`, with the paper's trends built in.

`fake_results_json` is the JSON object of a results.json (the CIFAR-10 net's 13 measured
layers and 8 conv layers, every group of the grid), `fake_results` the same read back as
`experiments.study.results.StudyResults`.
"""

import json

import numpy as np

from experiments.study import results as results_lib

VARIANTS = ("subsample", "max_pool", "avg_pool", "strided", "strided_relu")
CONV_LAYERS = [f"block{i}_conv{j}" for i in range(1, 5) for j in (1, 2)]


def layer_names(variant):
    down = "_down_relu" if variant == "strided_relu" else "_down"
    names = ["input"]
    for i in range(1, 5):
        names += [f"block{i}_relu1", f"block{i}_relu2", f"block{i}{down}"]
    return names


def fake_results(**kwargs):
    """`fake_results_json(**kwargs)` as StudyResults, read from its JSON text."""
    return results_lib.StudyResults.from_json(json.loads(json.dumps(fake_results_json(**kwargs))))


def fake_results_json(seeds=3, steps=(0, 50, 100), variants=VARIANTS, kinds=("real", "random"),
                      smooth_init=True, synthetic=True, rng_seed=0, sigmas=(0, 0.5, 1, 2),
                      strengths=(1, 2, 3, 4)):
    """The JSON object of study results, with the paper's trends built in.

    `sigmas` and `strengths` are listed (and keyed) in the order given.

    At init, sensitivity grows with depth, less for pooled variants (finding 1); training pulls
    every variant to the same pattern (finding 2); larger sigma lowers sensitivity (3); larger C
    lowers the trained smoothness measure (4); training smooths the filters (5).
    """
    rng = np.random.default_rng(rng_seed)
    depth = np.arange(13) / 12.0
    conv_depth = np.arange(8) / 7.0
    init_level = {"subsample": 0.55, "strided": 0.6, "strided_relu": 0.5, "max_pool": 0.3,
                  "avg_pool": 0.1}
    random_level = {"subsample": 0.5, "strided": 0.35, "strided_relu": 0.3, "max_pool": 0.2,
                    "avg_pool": 0.12}

    def noisy(mean, scale=0.02, positive=True):
        values = mean[None] + scale * rng.standard_normal((seeds,) + mean.shape)
        return np.abs(values) if positive else values

    results = {"title": "fake profile: Fashion-MNIST (embedded), CIFAR-10 net at width 0.125"}
    training = {}
    for kind in kinds:
        section = {}
        for variant in variants:
            init = 0.2 + (init_level[variant] - 0.2) * depth ** 0.8
            init += 0.05 * np.sin(np.arange(13) * 2.1)
            final_level = 0.1 if kind == "real" else random_level[variant]
            final = 0.2 + 0.25 * np.sin(np.pi * depth) + (final_level - 0.2) * depth
            t = (np.asarray(steps, np.float64) / max(steps[-1], 1))[:, None]
            cosine = init[None] * (1 - t) + final[None] * t
            smooth_start = np.full(8, 1.857)
            smooth_final = (1.62 + 0.15 * conv_depth if kind == "real"
                            else 1.8 - (0.3 if variant in ("max_pool", "avg_pool") else 0.05)
                            * conv_depth)
            smooth = smooth_start[None] * (1 - t) + smooth_final[None] * t
            relative = np.exp(np.log(cosine) + 1.2 - 2.0 * depth[None])
            section[variant] = {
                "seeds": list(range(seeds)),
                "layers": layer_names(variant),
                "conv_layers": CONV_LAYERS,
                "steps": list(steps),
                "sensitivity": {"cosine": noisy(cosine).tolist(),
                                "euclidean": noisy(1.3 * cosine).tolist()},
                "relative_stability": (relative[None] * np.exp(
                    0.1 * rng.standard_normal((seeds,) + relative.shape))).tolist(),
                "smoothness": noisy(smooth, 0.01).tolist(),
                "accuracy": noisy(np.array(0.9 if kind == "real" else 0.1), 0.005).tolist(),
                "train_accuracy": noisy(np.array(0.95 if kind == "real" else 0.98),
                                        0.005).tolist(),
            }
        training[kind] = section
    results["training"] = training
    if smooth_init:
        results["smooth_init"] = {
            "sigmas": list(sigmas), "layers": layer_names("max_pool"),
            "seeds": {str(s): list(range(seeds)) for s in sigmas},
            "sensitivity": {
                str(s): noisy((0.25 + 0.35 * depth) / (1 + 0.8 * s)).tolist() for s in sigmas},
            "smoothness": {str(s): noisy(np.full(8, 1.857 / (1 + 0.6 * s)), 0.01).tolist()
                           for s in sigmas},
        }
    if synthetic:
        results["synthetic"] = {
            "strengths": list(strengths), "conv_layers": CONV_LAYERS,
            "seeds": {str(c): list(range(seeds)) for c in strengths},
            "smoothness_init": {str(c): noisy(np.full(8, 1.857), 0.01).tolist()
                                for c in strengths},
            "smoothness_final": {str(c): noisy(1.8 - 0.06 * c - 0.05 * c * conv_depth,
                                               0.015).tolist() for c in strengths},
            "accuracy": {str(c): noisy(np.array(1.0 - 0.02 * c), 0.003).tolist()
                         for c in strengths},
        }
    return results

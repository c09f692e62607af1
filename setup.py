"""deform-tf: measuring and studying deformation stability of CNNs (TensorFlow 2 / Keras 3).

TensorFlow itself is chosen through an extra, as JAX does it, because the CPU and GPU builds are
different distributions that must not be installed side by side:

    pip install -e ".[cpu]"        # tensorflow-cpu 2.21 (laptops, CI)
    pip install -e ".[gpu]"        # tensorflow 2.21 with the CUDA libraries
    pip install -e ".[cpu,test]"   # plus pytest and scipy (the test oracles)
    pip install -e ".[cpu,bench]"  # plus albumentations, for bench.vs_albumentations only
"""

import setuptools

TF_VERSION = "~=2.21.0"

setuptools.setup(
    name="deform-tf",
    version="0.1.0",
    description="Deformation stability of CNNs: TPS deformations, VGG variants, sensitivity and "
    "smoothness metrics (TensorFlow 2 / Keras 3).",
    python_requires=">=3.10",
    packages=setuptools.find_packages(
        include=["deform_tf*", "pipelines*", "experiments*", "launch*", "bench*"]),
    package_data={"pipelines": ["data/*/*"], "launch": ["configs/*.cfg"]},
    install_requires=[
        "keras>=3.10",
        "tensorflow-datasets>=4.9",
        "numpy>=1.26",
        "absl-py>=2.0",
        "matplotlib>=3.8",
        "tensorboard>=2.19",
    ],
    extras_require={
        "cpu": ["tensorflow-cpu" + TF_VERSION],
        "gpu": ["tensorflow[and-cuda]" + TF_VERSION],
        "test": ["pytest>=8", "scipy>=1.11"],
        # Only `python -m bench.vs_albumentations` compares against it (it brings OpenCV and scipy).
        "bench": ["albumentations>=2.0"],
    },
    license="Apache-2.0",
)

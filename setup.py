"""flan_jax: the Flan collection, Flan-T5 finetuning and the paper's evaluation, in JAX."""
import setuptools

# Versions measured to install and run together on CPU (see README).
INSTALL_REQUIRES = [
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "seqio==0.0.20",
    "tensorflow==2.21.0",
    "tensorflow-text==2.21.1",
    "tensorflow-datasets==4.9.10",
    "gin-config==0.5.0",
    "sentencepiece==0.2.3",
    # The training input: checkpointable iterators over a random-access source, worker processes.
    "grain==0.2.18",
    # Training metrics' event files, written without TensorFlow (flan_jax/metrics_writer.py).
    "tensorboard",
    # `flan-jax plot`.
    "matplotlib",
    # Imported by tfds and others without being declared by them.
    "importlib_resources",
    "jinja2",
    "pyyaml",
    "msgpack",
    "tensorstore",
]

EXTRAS_REQUIRE = {
    # selenium drives the system's chromium + chromedriver in the rating page's browser test (.ci/run installs them).
    "test": ["pytest>=8", "pytest-timeout", "nbclient", "nbformat", "ipykernel", "selenium==4.51.0"],
    # Parity tests and benchmarks against Hugging Face only.
    "hf": ["torch==2.13.0", "transformers==5.23.0", "safetensors"],
    # XManager pulls cloud SDKs and caps protobuf below 7; kept out of the core install (docs/training.md).
    # kubernetes 37.0.2 wants python-dateutil>=3, google-cloud-bigquery <3: unpinned, pip backtracks ~15 min.
    "launch": ["xmanager==0.8.5.post1", "python-dateutil<3"],
}

setuptools.setup(
    name="flan_jax",
    version="0.1.0",
    description=__doc__,
    python_requires=">=3.10",
    packages=setuptools.find_packages(include=["flan_jax", "flan_jax.*", "tasks", "tasks.*", "launch"]),
    package_data={"flan_jax": ["data/files/*.json", "evaluation/*.html"]},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={"console_scripts": ["flan-jax=flan_jax.cli:main"]},
)

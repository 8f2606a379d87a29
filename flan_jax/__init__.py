"""flan_jax: build the Flan collection, finetune Flan-T5-class models on it, evaluate as the paper does."""
import os

# TensorFlow (read by seqio and TFDS, never used for compute here) logs its CUDA probing at start-up: on a CPU host
# a cuInit error and driver notes that say nothing about flan_jax. Its own errors still raise as exceptions.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"

"""flan_jax: build the Flan collection, finetune Flan-T5-class models on it, evaluate as the paper does."""

__version__ = "0.1.0"

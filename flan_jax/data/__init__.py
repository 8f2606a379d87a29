"""The Flan data layer: data dir, vocabulary, template rendering, few-shot assembly, mixing and packing."""

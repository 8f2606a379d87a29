"""The Flan data layer, in five rooms (docs/architecture.md): `files` (where the bytes come from), `catalog` (task
and mixture names, rates, presence), `rendering` (one example's text and ids), `pipeline` (the training input) and
`seqio_adapter` (the seqio mirror for T5X users). The `flan-jax data` command (`cli`, `doctor`, `stats`,
`collection`) sits here."""

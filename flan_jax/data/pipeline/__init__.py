"""The training input: a mixture's draws, rendered, tokenized and packed into per-host batches.

`schedule` picks the task of each draw, `sources` reads a draw, `blocks` packs blocks of draws (`packing`,
`host_batches`), `host_input` runs them in grain workers, and `input_pipeline` is the entry the trainer uses.
"""

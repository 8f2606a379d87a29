"""Names, rates and presence: the plain task catalog, without seqio or TensorFlow.

`registry.TASKS` holds the Flan tasks, `token_tasks.TASKS` the token tasks (UL2R, `ul2r`), `mixing.MIXTURES` the
mixtures and their rates; `availability` says which tasks have their data.
"""

"""The seqio mirror of the catalog, for T5X users: seqio Tasks and Mixtures, the seqio vocabulary, feature converters
and the UL2R denoisers as a seqio preprocessor. The training input never imports this room.
"""

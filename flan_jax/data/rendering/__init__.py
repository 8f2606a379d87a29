"""The text and token ids of one example.

FLAN's templates and few-shot assembly, example i of a Flan task (`flan_render`), the T5 SentencePiece tokenizer
without seqio, and UL2's denoisers on token ids.
"""

"""Where the bytes come from: the data dir, its pinned manifest and download, and readers of upstream files.

Readers here turn files into rows: CoT TSVs and NIv2 JSON (`readers`), prepared TFDS datasets (`tfds_source`),
promptsource templates, plain text for UL2R (`text_sources`) and offline mock rows for tests (`mock_sources`).
"""

"""Raw datasets → cached shards, and the `audioret` command line.

`pipeline` owns everything that touches raw audio or raw caption files: decoding, resampling, the one log-mel
definition (`pipeline.features`), dataset readers and the Click CLI. It writes through `cache` and hands arrays
to `trainer`; the trainer never decodes audio.
"""

"""The shard cache: keys, atomic publishing, locks, manifests, shard writer/reader, verification, and what the
stored features and split names mean (feature_contract.py, splits.py), which pipeline and trainer both read.

Knows nothing of models or audio decoding. Layout: `CACHE_DIR/<kind>/<key16>/` with `manifest.json`, shards
`shard-NNNNN.h5`, `failures.jsonl` and a `.lock` file; `kind` is "audio" or "captions".
"""

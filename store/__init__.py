"""The RocksDB parameter store, its row cache and snapshots.

`store` imports neither `stream`, `model` nor `deploy`.
"""

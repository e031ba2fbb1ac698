"""Feature hashing, DeepFM and its baselines, the online trainer, metrics.

`model` imports neither `stream`, `store` nor `deploy`.
"""

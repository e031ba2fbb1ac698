"""The composition root: configuration, CLI, daemons, the embedded broker.

Only `deploy` reads the environment, registers metrics, schedules jobs and
installs signal handlers; it may import `stream`, `model` and `store`.
"""

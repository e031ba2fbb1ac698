"""The streaming join around the pure core: per-partition tasks, their persisted
state, and the changelog that makes them survive crashes and rebalances."""

"""Kafka clients: option profiles, topic administration, producing records."""

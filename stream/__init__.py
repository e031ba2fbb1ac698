"""Events, codecs, Kafka clients and the traffic simulator.

`stream` imports neither `model`, `store` nor `deploy`.
"""

"""Real-time B2B lead scoring on Apache Kafka and Redis."""

__version__ = "0.1.0"

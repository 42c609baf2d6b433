"""The Kafka stream: documents in from an input topic, entity records out to an output topic."""

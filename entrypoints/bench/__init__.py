"""Benchmarks of the serving paths (in-process engine vs gRPC workers and orchestrator; the Kafka stream)."""

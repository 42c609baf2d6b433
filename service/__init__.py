"""The stream side of padellm-ner: Kafka ingestion, the asyncio orchestrator that fans count and mention
calls out to model workers, de-duplication and grounding (from `padellm_ner.core`), and the public gRPC API.
"""

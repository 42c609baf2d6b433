"""padellm-ner: PaDeLLM-NER (parallel decoding for LLM-based NER) as a streaming microservice.

`padellm_ner.core` holds the method's rules (schemas, prompt templates, reformulation, output parsing,
aggregation and de-duplication, grounding, metrics); `padellm_ner.data` reads and writes corpora.
`service/` (the stream and public API) and `workers/` (the model) both import them from here.
"""

__version__ = "0.1.0"

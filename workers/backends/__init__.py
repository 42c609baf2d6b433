"""Backends that decode PaDeLLM sequences for the worker: the embedded torch engine and TGI over HTTP."""

"""Entry points: the `padellm-ner` command line and the benchmarks. The top layer: it imports the service,
the workers and the method core; nothing imports it."""

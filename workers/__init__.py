"""The model side of padellm-ner: prompts, tokenizer, backends (embedded torch engine, TGI) and training.

Everything about the method's rules comes from `padellm_ner.core`; this package only turns them into
model calls.
"""

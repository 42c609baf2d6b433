"""Instruction tuning of a causal LM for PaDeLLM-NER (and the AutoReg_Struct baseline) on the CPU."""

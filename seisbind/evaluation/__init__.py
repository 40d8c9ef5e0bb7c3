"""Evaluation: retrieval metrics, zero-shot classification, probes, baselines (eval_zeroshot.py)."""

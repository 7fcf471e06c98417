"""Flows: what each trigger does, step by step. They call adapters for I/O and pure modules for every
choice, and import no SDK themselves.
"""

"""Concepts every pipeline stage shares: chemical systems, candidate ids, thread pinning, crash isolation.

This package imports nothing else from matris_flows, so every stage may depend on it
without creating import loops between stages.
"""

"""Running what the registry holds with llama.cpp, and only what verifies.

Kept import-free so that the worker process (``python -m hubd.runtime.worker``) starts fast.
"""

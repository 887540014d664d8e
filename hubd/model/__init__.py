"""What a revision is, read from its files: the card, adapter lineage, and the GGUF, safetensors
and pickle formats."""

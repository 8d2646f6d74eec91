"""IGPG: the weight generator (VQ-VAE weight tokenizer + GPT prior). Filled in by the generator work."""

__all__: list[str] = []

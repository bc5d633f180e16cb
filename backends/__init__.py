"""Everything heavy: writers (LLMs), image backends, embedders, tokenizers, model files.

Modules here import torch, diffusers, transformers or llama_cpp only inside functions or in
modules that the CLI imports lazily, so `zit --help` stays fast.
"""

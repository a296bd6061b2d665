"""repmatch: how similar are the internal representations of neural networks?

The library holds every piece of logic of the workflow; the Snakemake rules only call it.
"""

__version__ = "0.1.0"

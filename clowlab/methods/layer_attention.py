"""Contrastive learning with layer-wise attention pooling (Oh et al., COLING 2022).

The SimCSE objectives (unsupervised dropout views, supervised triples; methods/simcse.py) with
the sentence vector taken from every layer instead of the last one: for each of the N = L + 1
encoder outputs, its CLS vector is a query and its masked mean a key/value (bias-free dense +
RReLU), each query attends over the N layers (scores / N), the attended vectors are averaged,
concatenated to the last layer's CLS and mapped back to D by a dense + tanh MLP, in training
and at evaluation alike. See docs/methods/layer_attention.md for what matches the authors'
code (LayerAttPooler) and where clowlab differs.
"""
from __future__ import annotations

from clowlab.methods import simcse

METHOD = simcse.make_method("layer_attention")

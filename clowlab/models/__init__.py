"""Models: the Transformer encoder, its heads and (later) the normalizing flow."""
from clowlab.models.encoder import EncoderConfig, EncoderOutput, encode, init_params, pooler

__all__ = ["EncoderConfig", "EncoderOutput", "encode", "init_params", "pooler"]

"""Lightning callbacks."""

from viscy_utils.callbacks.embedding_writer import EmbeddingWriter

__all__ = ["EmbeddingWriter"]

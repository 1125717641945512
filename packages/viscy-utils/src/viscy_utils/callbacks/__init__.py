"""Lightning callbacks."""

from viscy_utils.callbacks.embedding_writer import EmbeddingWriter
from viscy_utils.callbacks.progress_log import LogProgress

__all__ = ["EmbeddingWriter", "LogProgress"]

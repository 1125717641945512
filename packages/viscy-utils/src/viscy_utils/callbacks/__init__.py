"""Lightning callbacks."""

from viscy_utils.callbacks.embedding_writer import EmbeddingWriter
from viscy_utils.callbacks.online_evaluation import OnlineEvaluation
from viscy_utils.callbacks.progress_log import LogProgress
from viscy_utils.callbacks.resumable_checkpoint import ResumableCheckpoint

__all__ = ["EmbeddingWriter", "LogProgress", "OnlineEvaluation", "ResumableCheckpoint"]

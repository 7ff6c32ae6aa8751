"""ClusterQA ingest: files -> clean, normalised documents -> citable chunks with exact offsets."""

from .chunking import chunk_document, split_sentences
from .errors import IngestError
from .pipeline import IngestResult, ingest_paths
from .readers import read_file
from .records import Chunk, Document

__all__ = [
    "Chunk",
    "Document",
    "IngestError",
    "IngestResult",
    "chunk_document",
    "ingest_paths",
    "read_file",
    "split_sentences",
]

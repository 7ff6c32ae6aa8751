"""The plain llama-index baseline: VectorStoreIndex, default SentenceSplitter, same embedding model,
dense only; its answer is its top passage. Built once per corpus and cached on disk."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def _llama_settings(settings):
    from llama_index.core import Settings as LlamaSettings

    from index.embedding import LlamaIndexEmbedding
    from index import get_embedder

    # Both set explicitly: unset, llama-index reaches for OpenAI.
    embed = LlamaIndexEmbedding(get_embedder(settings))
    LlamaSettings.llm = None
    LlamaSettings.embed_model = embed
    return embed


class LlamaIndexBaseline:
    """`retrieve(question)` -> ranked passages as dicts {doc_id, chunk_id, text}."""

    def __init__(self, docs: list[tuple[str, str, str]], settings, cache_dir: Path | None = None, top_k: int = 10,
                 show_progress: bool = False):
        """docs: (doc_id, title, text). The title goes in as metadata, as a plain reader would set it."""
        from llama_index.core import Document, StorageContext, VectorStoreIndex, load_index_from_storage

        embed = _llama_settings(settings)
        self.embed_model = embed
        self.top_k = top_k
        key = hashlib.sha256(json.dumps([docs, settings.embed_model], ensure_ascii=False).encode()).hexdigest()[:16]
        persist = Path(cache_dir) / f"baseline-{key}" if cache_dir else None
        if persist and (persist / "docstore.json").exists():
            storage = StorageContext.from_defaults(persist_dir=str(persist))
            self.index = load_index_from_storage(storage, embed_model=embed)
            self.built = False
        else:
            documents = [Document(text=text, metadata={"doc_id": doc_id, "title": title},
                                  excluded_embed_metadata_keys=["doc_id"], excluded_llm_metadata_keys=["doc_id"])
                         for doc_id, title, text in docs]
            # from_documents applies llama-index's default transformations: SentenceSplitter().
            self.index = VectorStoreIndex.from_documents(documents, embed_model=embed, show_progress=show_progress)
            self.built = True
            if persist:
                tmp = persist.with_name(persist.name + ".tmp")
                self.index.storage_context.persist(persist_dir=str(tmp))
                tmp.rename(persist)
        self.retriever = self.index.as_retriever(similarity_top_k=top_k)
        self.nodes = len(self.index.docstore.docs)

    def retrieve(self, question: str) -> list[dict]:
        return self._passages(self.retriever.retrieve(question))

    def retrieve_many(self, questions: list[str], batch_size: int = 64, progress: bool = False) -> list[list[dict]]:
        """Same results as retrieve(), with the query embeddings computed in batches
        (the retriever skips embedding when the QueryBundle carries one)."""
        from llama_index.core import QueryBundle

        from eval.progress import bar

        out = []
        with bar(len(questions), "retrieve baseline", progress) as pb:
            for i in range(0, len(questions), batch_size):
                batch = questions[i : i + batch_size]
                embs = self._embed_queries(batch)
                for q, e in zip(batch, embs):
                    out.append(self._passages(self.retriever.retrieve(QueryBundle(query_str=q, embedding=e))))
                pb.update(len(batch))
        return out

    def _embed_queries(self, questions: list[str]) -> list[list[float]]:
        # The wrapper's own query path (query prompt), batched through its Embedder.
        return self.embed_model.embedder.encode_queries(questions).tolist()

    @staticmethod
    def _passages(nodes) -> list[dict]:
        return [{"doc_id": n.node.metadata.get("doc_id", ""), "chunk_id": f"{n.node.metadata.get('doc_id', '')}~{n.node.node_id[:8]}",
                 "text": n.node.get_content(), "score": n.score} for n in nodes]

    def answer(self, passages: list[dict]) -> str:
        return passages[0]["text"] if passages else ""

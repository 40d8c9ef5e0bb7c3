"""Search over exported embeddings with FAISS."""

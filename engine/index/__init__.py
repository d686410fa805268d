"""The index: the SQLite file with sqlite-vec, its schema and migrations, embeddings and search."""

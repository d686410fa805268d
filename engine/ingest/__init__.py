"""Reading documents into the index: walk, load each format into segments, chunk, embed, store."""

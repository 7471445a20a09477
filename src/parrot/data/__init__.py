"""Data: the embedded default corpus, reading text files, token shards and batches."""

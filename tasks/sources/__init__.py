"""Where rows come from: files (listed, read in bounded batches) and HTTP APIs; records as text."""

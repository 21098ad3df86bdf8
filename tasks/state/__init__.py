"""What a pump keeps between runs.

store: the committed mark and files read, the open run's manifest, the run lock (StateStore);
known: the files a pump has read, by path and by content (_content: what identifies a file's
bytes).
"""

__all__ = ["known", "store"]

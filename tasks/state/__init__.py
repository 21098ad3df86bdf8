"""What a pump keeps between runs: the committed mark, the files read, the open run's manifest, the lock."""

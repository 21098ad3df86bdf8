"""What `pumphouse validate` checks beyond the spec."""

//! HyperLogLog sketches in the Redis format.

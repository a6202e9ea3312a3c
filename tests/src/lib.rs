//! Support for the end-to-end tests: starting and stopping real processes.

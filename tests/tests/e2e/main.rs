//! End-to-end tests with real processes, one module per area.

mod edge_process;

//! The edge pricing worker. Filled in by the edge issue; for now a library
//! so the workspace builds.

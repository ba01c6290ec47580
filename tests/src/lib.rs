//! Shared helpers for the workspace-level tests: locating the workspace and reading case files.

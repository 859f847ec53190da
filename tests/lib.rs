//! End-to-end tests of the whole pipeline live in this package's tests; it has no library code.

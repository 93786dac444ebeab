//! What the fuzz targets share: the documented error codes (`codes`, read
//! from docs/ERRORS.md itself, so a target fails when the code and the
//! document disagree), fixed signing keys (`keys`, so every run verifies
//! against the same key set), the two readings of an input (`mode`),
//! batches built from fuzz input (`batch_spec`), checks on error messages
//! (`messages`) and the in-process persistence API (`api_harness`, feature
//! `api`).

#[cfg(feature = "api")]
pub mod api_harness;
pub mod batch_spec;
pub mod codes;
pub mod keys;
pub mod messages;
pub mod mode;

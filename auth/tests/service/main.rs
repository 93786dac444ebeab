//! The auth service over real HTTP, against a real persistence API (the
//! owner of app tokens), each in-process on a loopback port over a temporary
//! data dir. One test binary: the tests run in parallel, so the suite takes
//! about as long as its slowest test (the key rotation one, which must let
//! whole seconds pass).

mod common;
mod keys;
mod revocation;
mod tokens;

//! Limits of the token format. Every check that bounds work an unauthenticated
//! caller can cause happens against one of these before anything is parsed.

/// Longest token accepted, in bytes, checked before any decoding. A token we
/// mint is under 500 bytes (user ids are at most 128 bytes), so this leaves
/// room for extra standard claims while bounding the base64 and JSON work a
/// stranger can make the verifier do.
pub const TOKEN_BYTES_MAX: usize = 4 * 1024;

/// Longest key id in bytes. Key ids are ASCII, so bytes are characters.
pub const KID_BYTES_MAX: usize = 64;

/// Clock skew tolerated between the minting and the verifying machine, in
/// seconds, applied to both ends of a token's life: it is accepted until
/// `exp + CLOCK_SKEW_LEEWAY_S` and from `iat - CLOCK_SKEW_LEEWAY_S`. Without
/// it a verifier whose clock runs a second behind the auth service's would
/// refuse freshly minted tokens as issued in the future; kept small because it
/// lengthens every token's life by as much.
pub const CLOCK_SKEW_LEEWAY_S: i64 = 5;

/// Margin, in seconds, added to every "can no token depend on this any
/// more" computation (retiring a key, forgetting a revocation). It covers
/// the verifiers' clock skew leeway (they accept a token until
/// `exp + CLOCK_SKEW_LEEWAY_S`), a second crossed while a mint is in
/// flight, and mints still in flight with the old key when a new one takes
/// over.
pub const RETIRE_GRACE_S: i64 = CLOCK_SKEW_LEEWAY_S + 5;

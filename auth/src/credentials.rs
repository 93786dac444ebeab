//! The operator key and app tokens as this service handles them: only as
//! SHA-256 digests, the ones every service uses (`chat_wire::secret`). The
//! operator key is compared by digest; an app token is sent to the
//! persistence API as the hex of its digest, never in clear.

pub use chat_wire::secret::{OperatorKey, SecretDigest as TokenDigest, digest, digest_hex};

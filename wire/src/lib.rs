//! Wire types shared by the engine and the persistence API, and the few
//! conventions every service must apply alike: strict JSON (`json`), numbers
//! in text (`number`) and secret digests (`secret`).
//!
//! The engine's owner shards group new messages into a [`Batch`] and post it,
//! rkyv-encoded, to the persistence API's internal batch endpoint. Both sides
//! link this crate so the format cannot drift, and both validate: the engine
//! before it encodes ([`Batch::validate`]), the API after it decodes
//! ([`decode_batch`] checks the archive, then the same `validate`).

pub mod batch;
pub mod json;
pub mod limits;
pub mod memberships;
pub mod number;
pub mod receipt;
pub mod secret;
pub mod user_id;

pub use batch::{
    BATCH_SEQ_HEADER, BATCH_STREAM_HEADER, BATCH_UNSETTLED_FROM_HEADER, Batch, BatchError, NewChat,
    NewMessage, decode_batch, encode_batch,
};
pub use memberships::{MembershipAnswers, MembershipCheck, MembershipChecks, ReadState};
pub use receipt::{BatchReceipt, ChatVersion, Refusal, RefusedChat};
pub use user_id::{UserIdError, validate_user_id};

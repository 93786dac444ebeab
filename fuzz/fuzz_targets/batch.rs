//! The rkyv batch format, the internal API's one binary input, two ways
//! (`chat_fuzz::mode`):
//! - on raw bytes, `decode_batch` never panics, its refusals show no memory
//!   address, and what it accepts passes `validate`, encodes again, and
//!   decodes to the same batch;
//! - on generated batches (small numbers and user ids from a short list, so
//!   many of them are valid), `encode_batch` refuses exactly what `validate`
//!   refuses, with the same error, and every encoded batch decodes equal.
//!   The encoded bytes of a generated batch are also decoded with one byte
//!   changed, which reaches the archive checks from a valid archive.

#![no_main]

use arbitrary::Arbitrary;
use chat_fuzz::batch_spec::BatchSpec;
use chat_fuzz::messages;
use chat_fuzz::mode::{self, Mode};
use chat_wire::{Batch, decode_batch, encode_batch};
use libfuzzer_sys::fuzz_target;

/// A small body limit, so that "too large" is reachable by a short input.
const BODY_BYTES_MAX: usize = 64;

#[derive(Arbitrary, Debug)]
struct Built {
    /// Which byte of the encoding to change, and how.
    flip_at: u16,
    flip_with: u8,
    batch: BatchSpec,
}

fuzz_target!(|bytes: &[u8]| match mode::read::<Built>(bytes) {
    Some(Mode::Text(bytes)) => check_decoded(bytes),
    Some(Mode::Structured(built)) =>
        check_built(&built.batch.build(), built.flip_at, built.flip_with),
    None => {}
});

/// Whatever `decode_batch` accepts is a valid batch that survives a round
/// trip; what it refuses, it says why without showing a memory address (the
/// message goes back to the sender).
fn check_decoded(bytes: &[u8]) {
    let batch = match decode_batch(bytes, BODY_BYTES_MAX) {
        Ok(batch) => batch,
        Err(error) => {
            let message = error.to_string();
            assert!(!messages::shows_address(&message), "{message}");
            return;
        }
    };
    assert_eq!(batch.validate(BODY_BYTES_MAX), Ok(()));
    let again = encode_batch(&batch, BODY_BYTES_MAX).expect("a decoded batch encodes");
    assert_eq!(decode_batch(&again, BODY_BYTES_MAX), Ok(batch));
}

fn check_built(batch: &Batch, flip_at: u16, flip_with: u8) {
    let validated = batch.validate(BODY_BYTES_MAX);
    let encoded = encode_batch(batch, BODY_BYTES_MAX);
    match (&validated, &encoded) {
        (Ok(()), Ok(bytes)) => {
            assert_eq!(decode_batch(bytes, BODY_BYTES_MAX).as_ref(), Ok(batch));
            let mut changed = bytes.clone();
            let at = usize::from(flip_at) % changed.len();
            changed[at] ^= flip_with.max(1);
            check_decoded(&changed);
        }
        (Err(refused), Err(error)) => assert_eq!(refused, error),
        _ => panic!("validate said {validated:?}, encode_batch {encoded:?}"),
    }
}

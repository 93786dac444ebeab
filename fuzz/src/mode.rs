//! How a target that has two readings of its input tells them apart: an
//! input whose first byte is [`STRUCTURED_MARKER`] is read structure-aware,
//! through `arbitrary`, from the rest; any other input is taken as written.
//! So seed corpora stay readable text (`fuzz/corpus/<target>/seed-*`), and
//! the fuzzer reaches the structured reading by changing one byte.

use arbitrary::{Arbitrary, Unstructured};

/// 0xFF never starts UTF-8 text, so no text seed is read the other way.
pub const STRUCTURED_MARKER: u8 = 0xFF;

pub enum Mode<'a, T> {
    Text(&'a [u8]),
    Structured(T),
}

pub fn read<'a, T: Arbitrary<'a>>(bytes: &'a [u8]) -> Option<Mode<'a, T>> {
    match bytes.split_first() {
        Some((&STRUCTURED_MARKER, rest)) => T::arbitrary_take_rest(Unstructured::new(rest))
            .ok()
            .map(Mode::Structured),
        _ => Some(Mode::Text(bytes)),
    }
}

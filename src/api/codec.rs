//! The protobuf codec of every orgd service, with small first buffers.
//!
//! tonic allocates a codec buffer up front for every call (8 KiB by
//! default) and grows it in steps of that size. Under 10,000 concurrent
//! streams those buffers alone are 80 MiB, almost all of it unused:
//! requests are a few hundred bytes. Starting at 1 KiB keeps memory per
//! call near what it uses; larger messages grow the buffer as needed.

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// First buffer of a call's encoder and decoder.
const BUFFER_BYTES: usize = 1024;
/// How much a streamed response batches before yielding (tonic's default).
const YIELD_THRESHOLD: usize = 32 * 1024;

#[derive(Debug, Clone)]
pub struct SmallBufferCodec<T, U> {
    _pd: PhantomData<(T, U)>,
}

impl<T, U> Default for SmallBufferCodec<T, U> {
    fn default() -> Self {
        Self { _pd: PhantomData }
    }
}

impl<T, U> Codec for SmallBufferCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::new(BUFFER_BYTES, YIELD_THRESHOLD))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(BufferSettings::new(BUFFER_BYTES, YIELD_THRESHOLD))
    }
}

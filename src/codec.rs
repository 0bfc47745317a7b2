//! The protobuf codec of every service: prost's, except that a request that does not parse is the caller's
//! error (`INVALID_ARGUMENT`, reason `MALFORMED_MESSAGE`), not the `INTERNAL` prost reports, so a hostile or
//! broken client can never make the service look faulty.

use tonic::{
    Status,
    codec::{BufferSettings, Codec, DecodeBuf, Decoder},
};
use tonic_prost::{ProstCodec, ProstDecoder, prost::Message};

use crate::{domain::reason, error::Error};

/// [`ProstCodec`] with caller-facing decode errors.
#[derive(Debug, Clone, Default)]
pub struct ProtoCodec<T, U>(ProstCodec<T, U>);

impl<T, U> Codec for ProtoCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = <ProstCodec<T, U> as Codec>::Encoder;
    type Decoder = StrictDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(buffer_settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        StrictDecoder(ProstCodec::<T, U>::raw_decoder(buffer_settings()))
    }
}

/// Initial size of a call's encode and decode buffers (tonic's default is 8 KiB each). They grow as a message
/// needs, but they live as long as the call: a watch stream keeps both for hours, so with 8 KiB each 10,000
/// open gadgets would hold 160 MiB of mostly empty buffers. Most messages of this API are far smaller.
const BUFFER_BYTES: usize = 1024;
/// Encoded messages batched into one send when many are ready at once (tonic's default).
const YIELD_THRESHOLD: usize = 32 * 1024;

fn buffer_settings() -> BufferSettings {
    BufferSettings::new(BUFFER_BYTES, YIELD_THRESHOLD)
}

/// Decodes like [`ProstDecoder`]; a message that does not parse is `INVALID_ARGUMENT`.
#[derive(Debug)]
pub struct StrictDecoder<U>(ProstDecoder<U>);

impl<U: Message + Default> Decoder for StrictDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0.decode(buf).map_err(|status| {
            Error::invalid(
                "request",
                reason::MALFORMED_MESSAGE,
                format!(
                    "the message does not parse as the method's request type: {}",
                    status.message()
                ),
            )
            .into()
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}

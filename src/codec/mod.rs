//! The protobuf codec of every service: prost's, except that
//! - a request is first inspected against its descriptor ([`inspect`]): the text rule for every string and a
//!   bound on the values a message may hold, so neither needs repeating in handlers and decoding never
//!   allocates without bound;
//! - a request that does not parse is the caller's error (`INVALID_ARGUMENT`, reason `MALFORMED_MESSAGE`), not
//!   the `INTERNAL` prost reports, so a hostile or broken client can never make the service look faulty.

pub mod inspect;

use std::{collections::HashMap, sync::LazyLock};

use prost_reflect::{DescriptorPool, MessageDescriptor};
use tonic::{
    Status,
    codec::{BufferSettings, Codec, DecodeBuf, Decoder},
};
use tonic_prost::{ProstCodec, ProstDecoder, prost::Message};

use crate::{domain::reason, error::Error};

/// A message type's fully qualified proto name, for its descriptor (generated for every message of the API).
pub trait Described {
    /// None for types outside the API (`google.protobuf.Empty` is `()`).
    const FULL_NAME: Option<&'static str>;
}

impl Described for () {
    const FULL_NAME: Option<&'static str> = None;
}

static DESCRIPTORS: LazyLock<HashMap<String, MessageDescriptor>> = LazyLock::new(|| {
    let Ok(pool) = DescriptorPool::decode(crate::pb::FILE_DESCRIPTOR_SET) else {
        return HashMap::new();
    };
    pool.all_messages()
        .map(|message| (message.full_name().to_owned(), message))
        .collect()
});

/// The descriptor of `M`, if it is a message of the API.
pub fn descriptor_of<M: Described>() -> Option<MessageDescriptor> {
    DESCRIPTORS.get(M::FULL_NAME?).cloned()
}

/// [`ProstCodec`] with requests inspected before decoding and caller-facing decode errors.
#[derive(Debug, Clone, Default)]
pub struct ProtoCodec<T, U>(ProstCodec<T, U>);

impl<T, U> Codec for ProtoCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Described + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = <ProstCodec<T, U> as Codec>::Encoder;
    type Decoder = StrictDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(buffer_settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        StrictDecoder {
            inner: ProstCodec::<T, U>::raw_decoder(buffer_settings()),
            descriptor: descriptor_of::<U>(),
        }
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

/// Inspects, then decodes like [`ProstDecoder`]; a message that breaks a rule or does not parse is
/// `INVALID_ARGUMENT`.
#[derive(Debug)]
pub struct StrictDecoder<U> {
    inner: ProstDecoder<U>,
    descriptor: Option<MessageDescriptor>,
}

impl<U: Message + Default> Decoder for StrictDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        if let Some(descriptor) = &self.descriptor {
            // A message arrives whole in one buffer; `chunk` is all of it.
            use prost::bytes::Buf as _;
            if buf.chunk().len() == buf.remaining() {
                inspect::inspect(descriptor, buf.chunk())
                    .map_err(|v| Status::from(Error::from(v)))?;
            }
        }
        self.inner.decode(buf).map_err(|status| {
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
        self.inner.buffer_settings()
    }
}
